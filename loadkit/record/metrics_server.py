"""The live metrics' HTTP endpoint: a LiveMetrics registry at /metrics, from a thread."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from loadkit import __version__
from loadkit.auth import authorized
from loadkit.errors import InputError
from loadkit.record.exporter import LiveMetrics
from loadkit.telemetry.agent_server import is_loopback

__all__ = ["MetricsServer"]


class MetricsServer:
    """Serves a LiveMetrics' registry at /metrics from a thread; `url` once made.

    Loopback unless a token is given (then every request must carry it as a
    bearer token, else 401): the generator's figures name the target's
    tenants, and a load generator is no web server to expose bare."""

    def __init__(self, metrics: LiveMetrics, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None) -> None:
        if not token and not is_loopback(host):
            raise InputError(f"refusing to serve live metrics on non-loopback address {host!r} "
                             "without a token: set LOADKIT_RUN_METRICS_TOKEN (or "
                             "--metrics-token), and give Prometheus the same token "
                             "(scrape_config authorization: credentials)")
        handler = type("Handler", (_Handler,), {"registry": metrics.registry, "token": token})
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise InputError(f"cannot serve live metrics on {host}:{port}: "
                             f"{exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.httpd.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self.httpd.serve_forever,
                                        name="loadkit-metrics", daemon=True)

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    token: str | None
    server_version = f"loadkit/{__version__}"

    def do_GET(self) -> None:  # the stdlib's name
        if not authorized(self.headers.get("Authorization"), self.token):
            self._send(401, b"missing or wrong token\n", "text/plain; charset=utf-8",
                       {"WWW-Authenticate": 'Bearer realm="loadkit"'})
        elif self.path.split("?")[0] == "/metrics":
            encoder, ctype = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(self.registry), ctype)
        else:
            self._send(404, b"not found: /metrics\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass
