"""`loadkit run --metrics-port`: serve the run's live metrics while it goes.

The server (run/metrics_server.py) starts before the target is checked, so a
refused address or a taken port exits 2 before anything is sent, and it
stops once the verdict is printed: the final interval and the final SLO
verdicts are published before that. `--metrics-linger D` keeps serving them
for D more (a Prometheus scrape every 15 s would otherwise miss the last
seconds); Ctrl-C or SIGTERM ends the wait, and the run's exit code stands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from loadkit.cli.params import duration, linger

if TYPE_CHECKING:
    from loadkit.run.exporter import LiveMetrics
    from loadkit.run.metrics_server import MetricsServer


def metrics_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The --metrics-* options of `loadkit run`."""
    for option in reversed((
        click.option("--metrics-port", type=click.IntRange(0, 65535),
                     help="Serve the run's live Prometheus metrics at "
                          "http://HOST:PORT/metrics (0: any free port; the URL is printed)."),
        click.option("--metrics-host", default="127.0.0.1", show_default=True,
                     help="Address of --metrics-port; anything but loopback needs a token."),
        click.option("--metrics-token", show_envvar=True,
                     help="Bearer token every scrape must carry (prefer the environment "
                          "variable: a flag shows in `ps`)."),
        click.option("--metrics-linger", callback=duration(zero=True, default=0.0),
                     help="Keep serving the final metrics this long after the verdict, "
                          "e.g. 30s, for a last scrape (Ctrl-C ends it)."),
    )):
        command = option(command)
    return command


class ServedMetrics:
    """The exporter and its server for one `loadkit run`; `metrics` is None
    without a port. A context manager: the server stops when it ends."""

    def __init__(self, port: int | None, host: str, token: str | None, linger_s: float) -> None:
        self.linger_s = linger_s
        self.metrics: LiveMetrics | None = None
        self.server: MetricsServer | None = None
        if port is None:
            return
        from loadkit.run import exporter, metrics_server  # lazy: numpy, prometheus_client

        self.metrics = exporter.LiveMetrics()
        # An address it may not serve on raises InputError: exit 2.
        self.server = metrics_server.MetricsServer(self.metrics, host, port, token or None)

    def __enter__(self) -> ServedMetrics:
        if self.server is not None:
            self.server.start()
            click.echo(f"loadkit: live metrics at {self.server.url}", err=True)
        return self

    def linger(self) -> None:
        """Serve the final figures for `linger_s` more, or until Ctrl-C/SIGTERM."""
        if self.server is not None and self.linger_s > 0:
            linger("the final metrics", self.server.url, self.linger_s)

    def __exit__(self, *_: object) -> None:
        if self.metrics is not None:
            self.metrics.close()
        if self.server is not None:
            self.server.close()
