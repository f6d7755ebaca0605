"""A test server whose answers never end (for the bounded end of a run).

Run as a separate process (`python tests/endless_server.py`), like
tests/servers.py, so its CPU is off the generator's event loop. A bare
asyncio protocol (stdlib only): nothing between the socket and what it
counts. Prints `LISTENING http://127.0.0.1:PORT` when bound. Paths:

- POST /endless...  200, an OpenAI-style SSE stream (chunked) of one token
                    every `--every` ms, forever: it never sends [DONE] and
                    ignores `max_tokens`.
- POST /never...    200 with its headers (chunked SSE), then never a byte more.
- GET /log          JSON: per kind (`endless`, `never`) how many answers
                    `started` and how many are still `open` (the client has
                    not closed their connections).
- GET /v1/models    lists `endless-model`; anything else: 200 `{"ok": true}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys

from servers import split_request  # tests/ is this script's own folder

TOKEN = b'data: {"choices":[{"index":0,"delta":{"content":"tok "}}]}\n\n'
STREAM_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
MAX_BUFFERED = 1 << 20  # a client that stops reading is not buried in tokens


def _json(doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


class Conn(asyncio.Protocol):
    def __init__(self, state: dict, every_s: float) -> None:
        self.state, self.every_s = state, every_s
        self.buf = b""
        self.kind: str | None = None  # once answering forever: "endless" or "never"
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream server: a Transport

    def data_received(self, data: bytes) -> None:
        if self.kind is not None:
            return  # the answer in progress never ends: nothing else is read
        self.buf += data
        while (request := split_request(self.buf)) is not None:
            head, self.buf = request
            method, path = head.split(" ")[:2]
            self.answer(method, path)
            if self.kind is not None:
                return

    def answer(self, method: str, path: str) -> None:
        assert self.transport is not None
        if method == "POST" and path.startswith(("/endless", "/never")):
            self.kind = "endless" if path.startswith("/endless") else "never"
            counts = self.state[self.kind]
            counts["started"] += 1
            counts["open"] += 1
            self.transport.write(STREAM_HEAD)
            if self.kind == "endless":
                self.tick()
        elif path == "/log":
            self.transport.write(_json(self.state))
        elif path == "/v1/models":
            self.transport.write(_json({"object": "list", "data": [
                {"id": "endless-model", "object": "model", "owned_by": "test"}]}))
        else:
            self.transport.write(_json({"ok": True}))

    def tick(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.get_write_buffer_size() < MAX_BUFFERED:
            transport.write(b"%x\r\n%s\r\n" % (len(TOKEN), TOKEN))
        self.timer = asyncio.get_running_loop().call_later(self.every_s, self.tick)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.kind is not None:
            self.state[self.kind]["open"] -= 1
        self.transport = None


async def main(args: argparse.Namespace) -> None:
    state = {kind: {"started": 0, "open": 0} for kind in ("endless", "never")}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(state, args.every / 1000.0),
                                      "127.0.0.1", 0, backlog=4096)
    print(f"LISTENING http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def _enough_files(wanted: int = 8192) -> None:
    """Every never-ending answer holds a connection open: raise the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=2.0, help="ms between streamed tokens")
    _enough_files()
    try:
        import uvloop
        uvloop.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
