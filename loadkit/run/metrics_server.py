"""The live metrics' HTTP endpoint: a LiveMetrics registry at /metrics, from a thread."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from loadkit import __version__
from loadkit.auth import authorized
from loadkit.run.exporter import LiveMetrics
from loadkit.served import QuietHandler, Served

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves a LiveMetrics' registry at /metrics from a thread; `url` once made.

    Loopback unless a token is given (then every request must carry it as a
    bearer token, else 401): the generator's figures name the target's
    tenants, and a load generator is no web server to expose bare."""

    def __init__(self, metrics: LiveMetrics, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        handler = type("Handler", (_Handler,), {"registry": metrics.registry, "token": token})
        self._served = Served(
            handler, host, port, token, name="loadkit-metrics",
            refusal=f"refusing to serve live metrics on non-loopback address {host!r} "
                    "without a token: set LOADKIT_RUN_METRICS_TOKEN (or --metrics-token), and "
                    "give Prometheus the same token (scrape_config authorization: credentials)")
        self.url = self._served.base + "/metrics"

    def start(self) -> MetricsServer:
        self._served.start()
        return self

    def close(self) -> None:
        self._served.close()


class _Handler(QuietHandler):
    registry: CollectorRegistry
    token: str | None
    server_version = f"loadkit/{__version__}"

    def do_GET(self) -> None:  # the stdlib's name
        if not authorized(self.headers.get("Authorization"), self.token):
            self.send(401, b"missing or wrong token\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Bearer realm="loadkit"'})
        elif self.path.split("?")[0] == "/metrics":
            encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
            self.send(200, encoder(self.registry), ctype)
        else:
            self.send(404, b"not found: /metrics\n", "text/plain; charset=utf-8")
