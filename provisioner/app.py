"""Command bodies behind the thin click layer (cli.py): one function per command.

Each takes the loaded Config and RunOptions, prints through opts.echo / opts.err, and returns the
process exit code (0, or 2 for "changes pending" / refused deletions). Errors are raised as
ProvisionError (exit 1); nothing here calls sys.exit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import Config
from .errors import ProvisionError


@dataclass
class RunOptions:
    state_dir: Path
    profile: str | None = None
    debug: bool = False
    sandbox: bool = False
    output: str = "text"  # text | json
    yes: bool = False
    interactive: bool = False  # stdin and stdout are a TTY
    adopt_dns: bool = False
    allow_delete: bool = False
    refresh_ami: bool = False
    detailed_exitcode: bool = False
    show_secrets: bool = False
    echo: Callable[[str], None] = print  # stdout
    err: Callable[[str], None] = print  # stderr
    confirm: Callable[[str], bool] = field(default=lambda prompt: False)


def _not_yet(command: str, issue: str) -> int:
    raise ProvisionError(
        f"'provision {command}' is not available yet: it arrives with the {issue}.",
        hint="'provision validate' and 'provision sandbox up|down|env' work now.",
    )


def run_plan(config: Config, opts: RunOptions) -> int:
    return _not_yet("plan", "AWS reconcile engine (issue 3)")


def run_apply(config: Config, opts: RunOptions) -> int:
    return _not_yet("apply", "AWS reconcile engine (issue 3)")


def run_destroy(config: Config, opts: RunOptions) -> int:
    return _not_yet("destroy", "AWS reconcile engine (issue 3)")


def run_reconcile(config: Config, opts: RunOptions) -> int:
    return _not_yet("reconcile", "AWS reconcile engine (issue 3)")


def run_status(config: Config, opts: RunOptions) -> int:
    return _not_yet("status", "AWS reconcile engine (issue 3)")


def run_output(config: Config, opts: RunOptions, name: str | None) -> int:
    return _not_yet("output", "AWS reconcile engine (issue 3)")


def run_userdata(config: Config, opts: RunOptions, cluster: str) -> int:
    return _not_yet("userdata", "instance bootstrap (issue 7)")
