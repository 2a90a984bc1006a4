"""Fixtures for the Cloudflare v4 DNS emulator. Filled by the emulators work."""
