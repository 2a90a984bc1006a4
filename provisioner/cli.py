"""The `provision` command line: thin click commands over the library (the only module that imports click).

Exit codes: 0 success; 1 any error, usage errors included; 2 only "changes pending" or refused
deletions (plan --detailed-exitcode, reconcile). No traceback unless --debug.
"""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import click

from . import __version__
from .errors import ProvisionError

EXAMPLE = "examples/dev.asg.yaml"


def _common(f):
    """Options every cloud-facing command takes after its name."""
    options = [
        click.option("--stack", metavar="NAME", help="Stack name (default: the file name before .asg.yaml)."),
        click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
                     help="State cache directory (default: $PROVISION_STATE_DIR or ./state)."),
        click.option("--profile", metavar="PROFILE", help="AWS profile (default: the standard boto3 chain)."),
        click.option("--debug", is_flag=True, help="Show tracebacks and AWS calls."),
        click.option("--sandbox", is_flag=True,
                     help="Use the local emulators of AWS, Cloudflare and ACME (started if not running)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _config_arg(f):
    return click.argument("file", type=click.Path(path_type=Path, dir_okay=True))(f)


def _state_dir(value: Path | None) -> Path:
    if value is not None:
        return value
    return Path(os.environ.get("PROVISION_STATE_DIR") or "state")


def _load(file: Path, stack: str | None, require_env: bool = True):
    from .config import load_config

    return load_config(file, stack=stack, require_env=require_env)


def _use_sandbox(enabled: bool, config=None):
    """Point this process at the local emulators; with a config, also at the sandbox's pebble."""
    if not enabled:
        return config
    from . import sandbox

    values = sandbox.ensure_running()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):  # never mix a real profile in
        os.environ.pop(var, None)
    os.environ.update(values)
    directory = values.get("PROVISION_ACME_DIRECTORY")
    if config is not None and directory:
        import dataclasses

        config = dataclasses.replace(config, settings=dataclasses.replace(config.settings, acme_directory=directory))
    return config


def _err(message: str) -> None:
    click.echo(message, err=True)


def _options(ctx_kwargs: dict, **extra):
    from .app import RunOptions

    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    return RunOptions(
        state_dir=_state_dir(ctx_kwargs.get("state_dir")),
        profile=ctx_kwargs.get("profile"),
        debug=ctx_kwargs.get("debug", False),
        sandbox=ctx_kwargs.get("sandbox", False),
        interactive=interactive,
        echo=click.echo,
        err=_err,
        confirm=lambda prompt: click.confirm(prompt, default=False, err=True),
        **extra,
    )


def _run(fn_name: str, file: Path, kw: dict, require_env: bool = True, extra: dict | None = None, args=()):
    """Load the config, start the sandbox if asked, call app.<fn_name>, exit with its code."""
    from . import app

    config = _load(file, kw.get("stack"), require_env=require_env)
    config = _use_sandbox(kw.get("sandbox", False), config)
    opts = _options(kw, **(extra or {}))
    code = getattr(app, fn_name)(config, opts, *args)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="provision")
def cli() -> None:
    """Put llama.cpp inference servers on AWS from one YAML file, and keep them there.

    \b
    provision validate dev.asg.yaml
    provision plan dev.asg.yaml
    provision apply dev.asg.yaml --yes
    provision apply examples/dev.asg.yaml --sandbox --yes   # all local, no cloud account
    """


@cli.command()
@_config_arg
@_common
def validate(file: Path, **kw) -> None:
    """Check FILE against the schema and the semantic rules; no network.

    \b
    Example:
      provision validate dev.asg.yaml
    Exit status: 0 valid, 1 invalid (every problem listed with its YAML path).
    """
    config = _load(file, kw.get("stack"))
    hosts = len(config.hosts)
    regions = ", ".join(config.regions) or "none"
    click.echo(f"{file}: valid: stack {config.stack!r}, {len(config.clusters)} cluster(s), "
               f"{hosts} host(s), region(s): {regions}")


@cli.command()
@_config_arg
@_common
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when changes are pending, 0 when in sync.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--refresh-ami", is_flag=True, help="Re-resolve the AMI instead of keeping the recorded one.")
def plan(file: Path, detailed_exitcode: bool, output: str, refresh_ami: bool, **kw) -> None:
    """Read live AWS and DNS and print the actions an apply would take.

    \b
    Example:
      provision plan dev.asg.yaml --detailed-exitcode --output json
    Exit status: 0; with --detailed-exitcode 0 in sync, 2 changes pending.
    """
    _run("run_plan", file, kw, extra={"detailed_exitcode": detailed_exitcode, "output": output,
                                      "refresh_ami": refresh_ami})


@cli.command()
@_config_arg
@_common
@click.option("--yes", "-y", is_flag=True, help="Apply without asking (required when not on a TTY).")
@click.option("--adopt-dns", is_flag=True, help="Take over existing A records of our hostnames (never AAAA/CNAME).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--refresh-ami", is_flag=True, help="Re-resolve the AMI (a new AMI release rolls the fleet).")
def apply(file: Path, yes: bool, adopt_dns: bool, output: str, refresh_ami: bool, **kw) -> None:
    """Plan, then make AWS and DNS match FILE (asks first on a TTY).

    \b
    Example:
      provision apply dev.asg.yaml --yes
    Safe to interrupt and re-run: it converges. Exit status: 0 converged.
    """
    _run("run_apply", file, kw, extra={"yes": yes, "adopt_dns": adopt_dns, "output": output,
                                       "refresh_ami": refresh_ami})


@cli.command()
@_config_arg
@_common
@click.option("--yes", "-y", is_flag=True, help="Destroy without asking (required when not on a TTY).")
def destroy(file: Path, yes: bool, **kw) -> None:
    """Remove everything the stack owns (DNS records first); nothing else is touched.

    \b
    Example:
      provision destroy dev.asg.yaml --yes
    ${VAR} references need not be set. Exit status: 0 nothing left.
    """
    _run("run_destroy", file, kw, require_env=False, extra={"yes": yes})


@cli.command()
@_config_arg
@_common
@click.option("--allow-delete", is_flag=True, help="Also delete clusters, hosts and addresses gone from FILE.")
def reconcile(file: Path, allow_delete: bool, **kw) -> None:
    """For cron: apply only when drifted; one JSON line per action on stdout.

    \b
    Example (crontab):
      */10 * * * * cd /srv/llm && provision reconcile prod.asg.yaml >> reconcile.log
    Exit status: 0 in sync or corrected; 2 deletions refused (pass --allow-delete).
    """
    _run("run_reconcile", file, kw, extra={"allow_delete": allow_delete, "yes": True, "output": "json"})


@cli.command()
@_config_arg
@_common
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(file: Path, output: str, **kw) -> None:
    """Per host: instance, spot/on-demand, AZ, address, DNS, phase, health.

    \b
    Example:
      provision status dev.asg.yaml --output json
    """
    _run("run_status", file, kw, extra={"output": output})


@cli.command()
@_config_arg
@click.argument("name", required=False)
@_common
@click.option("--show-secrets", is_flag=True, help="Print the api-key instead of masking it.")
def output(file: Path, name: str | None, show_secrets: bool, **kw) -> None:
    """Print the stack's outputs (hostnames, IPs per cluster, api-key), like `pulumi stack output`.

    \b
    Example:
      provision output dev.asg.yaml api-key --show-secrets
    """
    _run("run_output", file, kw, extra={"show_secrets": show_secrets}, args=(name,))


@cli.command()
@_config_arg
@click.argument("cluster")
@_common
def userdata(file: Path, cluster: str, **kw) -> None:
    """Print the exact user data CLUSTER's launch template carries (it holds no secret).

    \b
    Example:
      provision userdata dev.asg.yaml deepseek-r1-demo
    """
    _run("run_userdata", file, kw, args=(cluster,))


@cli.group()
def sandbox() -> None:
    """Local emulators of AWS (moto), Cloudflare and ACME (pebble), for trying provision with no account.

    \b
    Example:
      provision sandbox up && eval "$(provision sandbox env)" && aws ec2 describe-addresses
    """


@sandbox.command("up")
def sandbox_up() -> None:
    """Start the emulators in the background (no-op when running)."""
    from . import sandbox as sb

    info = sb.up()
    click.echo(info if isinstance(info, str) else "sandbox running")


@sandbox.command("down")
def sandbox_down() -> None:
    """Stop the emulators (their state is lost)."""
    from . import sandbox as sb

    info = sb.down()
    click.echo(info if isinstance(info, str) else "sandbox stopped")


@sandbox.command("env")
def sandbox_env() -> None:
    """Print `export` lines that point the aws CLI, boto3 and the Cloudflare SDK at the sandbox."""
    from . import sandbox as sb

    click.echo(sb.env_exports())


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps every error to exit 1 with one message, and never shows a traceback unless --debug."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        result = cli.main(args=argv, prog_name="provision", standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except SystemExit as exc:  # our commands exit with their code
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.exit(code)
    except click.UsageError as exc:
        if type(exc).__name__.startswith("NoArgsIsHelp"):  # bare `provision`: show the help
            click.echo(exc.format_message())
            sys.exit(0)
        hint = f"\nTry '{exc.ctx.command_path} --help'." if exc.ctx is not None else ""
        _err(f"provision: {exc.format_message()}{hint}")
        sys.exit(1)
    except click.ClickException as exc:
        _err(f"provision: {exc.format_message()}")
        sys.exit(1)
    except click.exceptions.Abort:
        _err("provision: aborted; nothing more was changed")
        sys.exit(1)
    except ProvisionError as exc:
        if debug:
            traceback.print_exc()
        _err(str(exc))
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _err("provision: interrupted; re-running the same command converges")
        sys.exit(130)
    except Exception as exc:  # a bug or an unexpected cloud answer: one line, the rest with --debug
        if debug:
            traceback.print_exc()
        _err(f"provision: unexpected error: {type(exc).__name__}: {exc}\n"
             f"  rerun with --debug for the traceback, and please report it")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()

