"""Telemetry scrapes read to a limit: an endpoint that answers without end
(a misrouted download, a hostile server) is a failed source with the reason,
not gigabytes read into memory. Real loopback servers, counting what they
managed to send before loadkit hung up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from loadkit.engine.bounded import MAX_SCRAPE_BYTES
from loadkit.telemetry.agent_client import AgentSource
from loadkit.telemetry.prometheus import PrometheusSource
from loadkit.telemetry.store import Source

BLOCK = b"# " + b"x" * 65533 + b"\n"  # a comment line: valid Prometheus text, forever
ENDLESS = 4 * MAX_SCRAPE_BYTES  # where the server gives up, if nobody stops reading


@contextmanager
def endless_server(declare_length: bool) -> Iterator[tuple[str, list[int], threading.Event]]:
    """Answers every GET with 64 MiB (close-delimited, or declared in
    Content-Length); yields its URL, the bytes each answer got out, and an
    event set when an answer has ended."""
    sent: list[int] = []
    ended = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            if declare_length:
                self.send_header("Content-Length", str(ENDLESS))
            self.send_header("Connection", "close")
            self.end_headers()
            n = 0
            try:
                while n < ENDLESS:
                    self.wfile.write(BLOCK)
                    n += len(BLOCK)
            except OSError:
                pass  # the client hung up: what we want
            sent.append(n)
            ended.set()
            self.close_connection = True

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sent, ended
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def poll_once(src: Source) -> dict:
    src.open()
    try:
        src.poll()
    finally:
        src.close()
    return src.describe()


@pytest.mark.parametrize("declare_length", [False, True], ids=["endless", "declared"])
@pytest.mark.parametrize("kind", ["prometheus", "agent"])
def test_an_endless_scrape_is_cut_at_the_limit_and_the_source_failed(
        kind: str, declare_length: bool) -> None:
    with endless_server(declare_length) as (url, sent, ended):
        src: Source = (PrometheusSource(url + "/metrics", None, "", 1.0) if kind == "prometheus"
                       else AgentSource(url, None, 1.0))
        described = poll_once(src)
        assert ended.wait(30)  # the server saw the hang-up (or sent it all)
    assert described["status"] == "failed" and src.samples == 0, described
    assert f"loadkit reads at most {MAX_SCRAPE_BYTES >> 20} MiB" in described["reason"]
    if declare_length:
        assert f"{ENDLESS:,} bytes" in described["reason"]
    # It hung up at the limit (what the socket buffers held besides), not at the end.
    assert len(sent) == 1 and sent[0] < 2 * MAX_SCRAPE_BYTES, sent
