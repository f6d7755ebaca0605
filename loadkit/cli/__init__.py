"""The `loadkit` command line: one module per command, errors mapped to exit codes.

No traceback ever reaches a user: a LoadkitError prints its message and exits
with its code; anything unexpected is reported as an internal error (exit 3),
with the traceback only when LOADKIT_DEBUG=1.
"""

from __future__ import annotations

import os
import traceback

import click

from loadkit import __version__
from loadkit.cli.agent import agent_command
from loadkit.cli.capacity import capacity_command
from loadkit.cli.compare import compare_command
from loadkit.cli.distributed import worker_command
from loadkit.cli.plan import plan_command
from loadkit.cli.report import report_command
from loadkit.cli.run import run_command
from loadkit.cli.sim import sim_command
from loadkit.errors import ExitCode, LoadkitError, printable


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="loadkit")
def cli() -> None:
    """Load testing and SLO verification for GPU inference endpoints."""


cli.add_command(run_command)
cli.add_command(plan_command)
cli.add_command(report_command)
cli.add_command(compare_command)
cli.add_command(sim_command)
cli.add_command(agent_command)
cli.add_command(worker_command)
cli.add_command(capacity_command)


def main(argv: list[str] | None = None) -> int:
    try:
        rc = cli.main(args=argv, prog_name="loadkit", standalone_mode=False,
                      auto_envvar_prefix="LOADKIT")  # LOADKIT_RUN_STRICT=1, ...
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("loadkit: interrupted", err=True)
        return ExitCode.UNTRUSTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:  # usage errors: exit 2
        exc.show()
        return ExitCode.BAD_INPUT
    except LoadkitError as exc:
        click.echo(f"loadkit: error: {printable(str(exc))}", err=True)  # may quote a server
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except Exception as exc:  # noqa: BLE001 - last line of defence
        if os.environ.get("LOADKIT_DEBUG"):
            traceback.print_exc()
        click.echo(f"loadkit: internal error: {type(exc).__name__}: {exc} "
                   "(set LOADKIT_DEBUG=1 for the traceback, and please report it)", err=True)
        return ExitCode.UNTRUSTED
    return int(rc or 0)


__all__ = ["cli", "main"]
