"""Fixtures for the AWS emulator (moto server + fault layer). Filled by the emulators work."""
