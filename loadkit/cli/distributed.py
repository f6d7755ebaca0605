"""`loadkit run --workers N | --master`, and `loadkit worker`: runs bigger than one process.

The flags follow Locust's where they fit (--master, --expect-workers,
--master-bind-host, --master-bind-port, --master-host/--master-port on the
worker side as `--master HOST:PORT`). The token comes from LOADKIT_TOKEN
(a flag shows in `ps`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from loadkit.cli.params import duration
from loadkit.distributed.fleet import FleetOptions, require_locust
from loadkit.errors import ExitCode, InputError

LOCUST_PORT = 5557  # Locust's own default master port


def workers(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """`--workers N|auto`: a number of processes, auto = one per core."""
    if value is None:
        return None
    if value == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    try:
        n = int(value)
    except ValueError:
        raise click.BadParameter("a number of processes, or auto (one per core)") from None
    if not 1 <= n <= 1024:
        raise click.BadParameter("between 1 and 1024")
    return n


def fleet_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The distributed options of `loadkit run`."""
    for option in reversed((
        click.option("--workers", callback=workers, metavar="N|auto",
                     help="Run the load in N local worker processes (auto: one per core), "
                          "on Locust's master/worker runners; one result as from one process."),
        click.option("--master", is_flag=True,
                     help="Be the master of workers on other machines (`loadkit worker "
                          "--master HOST:PORT` on each)."),
        click.option("--expect-workers", type=click.IntRange(1, 1024),
                     help="With --master: how many workers to wait for before the start."),
        click.option("--master-bind-host", default="127.0.0.1", show_default=True,
                     help="Address the master listens on; anything but loopback needs "
                          "LOADKIT_TOKEN."),
        click.option("--master-bind-port", type=click.IntRange(0, 65535), default=LOCUST_PORT,
                     show_default=True, help="Port the master listens on (with --master)."),
        click.option("--worker-timeout", callback=duration(1.0, default=60.0),
                     help="How long to wait for the expected workers (default 60s); then "
                          "exit 3 naming the missing."),
        click.option("--allow-worker-loss", is_flag=True,
                     help="A lost worker does not make the run untrusted: the verdict is "
                          "over what was measured (and says so)."),
    )):
        command = option(command)
    return command


def fleet_from(workers: int | None, master: bool, expect_workers: int | None,
               bind_host: str, bind_port: int, timeout_s: float,
               allow_loss: bool) -> FleetOptions | None:
    """None: one process runs the load."""
    if workers is not None and master:
        raise InputError("--workers starts local workers, --master waits for remote ones: "
                         "give one of them")
    if master and expect_workers is None:
        raise InputError("--master needs --expect-workers N")
    if expect_workers is not None and not master:
        raise InputError("--expect-workers goes with --master")
    token = os.environ.get("LOADKIT_TOKEN", "")
    if workers is not None:
        return FleetOptions(workers=workers, local=True, join_timeout_s=timeout_s,
                            allow_worker_loss=allow_loss)
    if master:
        return FleetOptions(workers=expect_workers or 1, bind_host=bind_host,
                            bind_port=bind_port, token=token, join_timeout_s=timeout_s,
                            allow_worker_loss=allow_loss)
    return None


def _address(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"HOST:PORT, e.g. 10.0.0.5:{LOCUST_PORT}, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("worker")
@click.option("--master", "master", required=True, callback=_address, metavar="HOST:PORT",
              help=f"The master's address (`loadkit run --master`; port {LOCUST_PORT} "
                   "by default there).")
def worker_command(master: tuple[str, int]) -> int:
    """Carry one shard of a distributed run for the master at HOST:PORT.

    The token the master asks for comes from LOADKIT_TOKEN; the workload's
    ${VAR} secrets come from this machine's environment (they never cross the
    channel). Exits 0 when the run ends, 2 when the master refuses this worker
    (or Locust is not installed), 3 when the master cannot be reached.
    """
    # A fresh interpreter: Locust must patch the standard library with gevent
    # before anything imports it, and this process has imported plenty.
    host, port = master
    require_locust()
    os.execv(sys.executable, [sys.executable, "-m", "loadkit.distributed.relay", "worker",
                              host, str(port)])
    return int(ExitCode.UNTRUSTED)  # not reached: execv replaces this process
