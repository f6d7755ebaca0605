"""`--ui [HOST:]PORT`: serve the live view while the run (or the search) goes.

The server (run/live_view.py) starts before the target is checked, so a
refused address (off loopback without a token) or a taken port exits 2
before anything is sent. When the run is judged and its report written,
open pages switch to report.html; `--ui-linger D` keeps serving it for D
more (Ctrl-C or SIGTERM ends the wait; the run's exit code stands),
otherwise the server stops once open pages have fetched it (a few seconds
at most).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loadkit.cli.params import duration, linger

if TYPE_CHECKING:
    from loadkit.run.live_view import LiveView


def _address(_ctx: click.Context, _param: click.Parameter,
             value: str | None) -> tuple[str, int] | None:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` (loopback when no host is given)."""
    if value is None:
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise click.BadParameter("expected [HOST:]PORT, e.g. 8089 or 0.0.0.0:8089 "
                                 "(0: any free port)") from None
    if not 0 <= number <= 65535:
        raise click.BadParameter("the port must be between 0 and 65535")
    return host, number


def ui_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --ui options of `loadkit run` and `loadkit capacity`."""
    for option in reversed((
        click.option("--ui", "ui", callback=_address, metavar="[HOST:]PORT",
                     help="Serve a live web view of the run at http://HOST:PORT/ (SLOs, "
                          "charts, timeline, a stop button and notes; 0: any free port; the "
                          "URL is printed). Anything but loopback needs --ui-token."),
        click.option("--ui-token", envvar="LOADKIT_UI_TOKEN", show_envvar=True,
                     help="Token the live view asks for (open it as http://HOST:PORT/?token=T; "
                          "prefer the environment variable LOADKIT_UI_TOKEN: a flag shows "
                          "in `ps`)."),
        click.option("--ui-linger", callback=duration(zero=True, default=0.0),
                     help="Keep serving the final report on the live view this long after "
                          "the verdict, e.g. 10m (Ctrl-C ends it; default 0: stop at the end)."),
    )):
        command = option(command)
    return command


class ServedUI:
    """The live view of one command; `view` is None without --ui. A context
    manager: the server stops when it ends."""

    def __init__(self, address: tuple[str, int] | None, token: str | None, linger_s: float,
                 kind: str = "run") -> None:
        self.linger_s = linger_s
        self.view: LiveView | None = None
        if address is None:
            return
        from loadkit.run.live_view import LiveView  # lazy: only --ui pays for it

        # An address it may not serve on raises InputError: exit 2.
        self.view = LiveView(address[0], address[1], token or None, kind=kind)

    def __enter__(self) -> ServedUI:
        if self.view is not None:
            self.view.start()
            click.echo(f"loadkit: live view at {self.view.url}", err=True)
        return self

    def finished(self, report: Path | None) -> None:
        """The reports are written: show the final one, and linger if asked."""
        if self.view is None:
            return
        if report is not None and report.suffix == ".html" and report.exists():
            self.view.show_report(report)
        if self.linger_s > 0:
            linger("the final report", self.view.url, self.linger_s)

    def __exit__(self, *_: object) -> None:
        if self.view is not None:
            self.view.close()
