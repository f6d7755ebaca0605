#!/usr/bin/env python3
"""A streaming target cheaper than the generator it measures, for bench/bench.py.

    python bench/sse_target.py --gap-ms 5     (prints LISTENING http://127.0.0.1:PORT)

The embedded simulator tops out near 48,000 streamed token events/s on one
core (bench/bench_sim.py): a benchmark of loadkit's streaming path against it
measures the simulator. This target does nothing but stream: a bare asyncio
protocol on uvloop, every chat completion answered with `max_tokens` SSE
chunks (one token each, bytes built once) at a fixed gap on absolute times
(event i at first + i x gap: no drift), then a usage chunk and [DONE];
GET /v1/models lists `sse-target`. HTTP/1.1 keep-alive, chunked responses,
Content-Length request bodies only: enough for a benchmark, not a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from typing import cast

MAX_TOKENS = re.compile(rb'"max_tokens"\s*:\s*(\d+)')


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")
TOKEN = chunk(b'data: {"id":"b","object":"chat.completion.chunk","model":"sse-target",'
              b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
MODELS = json.dumps({"object": "list", "data": [{"id": "sse-target", "object": "model"}]}).encode()


def tail(n: int) -> bytes:
    usage = json.dumps({"id": "b", "object": "chat.completion.chunk", "model": "sse-target",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                        "usage": {"prompt_tokens": 8, "completion_tokens": n,
                                  "total_tokens": n + 8}}).encode()
    return chunk(b"data: " + usage + b"\n\n") + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"


class Stream(asyncio.Protocol):
    def __init__(self, gap: float) -> None:
        self.gap, self.buf = gap, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            head = self.buf[:end]
            match = re.search(rb"(?i)content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            if head.startswith(b"GET"):
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: %d\r\n\r\n%s" % (len(MODELS), MODELS))
            else:
                found = MAX_TOKENS.search(body)
                self.stream(int(found.group(1)) if found else 16)

    def stream(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        if n <= 1:
            self.transport.write(HEAD + TOKEN + tail(1))
            return
        self.transport.write(HEAD + TOKEN)  # token 0 at once; token i at first + i x gap
        first = loop.time()

        def event(i: int) -> None:
            if self.transport.is_closing():
                return
            if i == n - 1:
                self.transport.write(TOKEN + tail(n))
            else:
                self.transport.write(TOKEN)
                loop.call_at(first + (i + 1) * self.gap, event, i + 1)

        loop.call_at(first + self.gap, event, 1)


async def main(gap_ms: float, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Stream(gap_ms / 1000.0), "127.0.0.1", port,
                                      backlog=4096)
    print(f"LISTENING http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gap-ms", type=float, default=5.0)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.run(main(args.gap_ms, args.port))
    except ImportError:
        asyncio.run(main(args.gap_ms, args.port))
    except KeyboardInterrupt:
        pass
