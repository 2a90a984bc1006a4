"""Helpers for the container's end-to-end tests: a tiny GGUF writer and a local Hub endpoint."""
