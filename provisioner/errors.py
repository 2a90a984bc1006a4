"""Errors the library raises. The CLI turns each into one message on stderr and exit 1.

Library code never calls sys.exit: it raises one of these, with a message that names the file,
the YAML path or the cloud resource, and says what to do.
"""
from __future__ import annotations


class ProvisionError(Exception):
    """Any error an operator should see as one clear line (exit 1)."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message}\n  hint: {hint}")


class ConfigError(ProvisionError):
    """The config file is invalid. Raised before any network call."""

    def __init__(self, messages: list[str] | str):
        if isinstance(messages, str):
            messages = [messages]
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class LockHeldError(ProvisionError):
    """Another run holds the stack's lock."""


class CloudError(ProvisionError):
    """An AWS or Cloudflare call failed in a way retrying will not fix."""
