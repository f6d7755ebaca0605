"""The small HTTP endpoints loadkit serves itself (the GPU agent, a run's live
metrics): the stdlib's threading server on a daemon thread, loopback unless a
bearer token guards it, quiet, answering with `send`."""

from __future__ import annotations

import ipaddress
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loadkit.errors import InputError

__all__ = ["QuietHandler", "Served", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that answers in one call and logs nothing (the run's output
    is the console and its reports, not an access log)."""

    def send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # the stdlib's name
        pass


class Served:
    """`handler` served on host:port from a daemon thread; `base` is its URL.
    `refusal` is the message for a non-loopback host without a token."""

    def __init__(self, handler: type[QuietHandler], host: str, port: int, token: str | None,
                 refusal: str, name: str) -> None:
        if not token and not is_loopback(host):
            raise InputError(refusal)
        try:
            self.httpd = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self.httpd.daemon_threads = True
        shown = f"[{host}]" if ":" in host else host
        self.base = f"http://{shown}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
