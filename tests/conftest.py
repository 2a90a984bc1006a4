"""Fixtures shared by the suite live in plugin modules, one per emulator."""

pytest_plugins = [
    "tests.fixtures_aws",
    "tests.fixtures_cloudflare",
]
