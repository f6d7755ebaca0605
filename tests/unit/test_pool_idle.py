"""The lean client's keep-alive pool (loadkit/engine/http1.py) against a
loopback server: a connection idle past MAX_IDLE_S is not reused, as a server
may close it in the instant it is reused (a request it never saw, counted as
`reset`); a stream held open after its end marker ends without a timeout,
on both transports."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest

from loadkit.engine import http1
from loadkit.engine.adapter import ParsedResponse, PreparedRequest
from loadkit.engine.http1 import Pool
from loadkit.engine.transports import AiohttpTransport
from loadkit.workload.models import Client, Timeouts

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class Body:
    wants_body = ok = True

    def __init__(self) -> None:
        self.data = b""

    def status(self, code: int, t: int) -> None:
        assert code == 200

    def body(self, data: bytes, t: int) -> None:
        self.data += data

    @property
    def ended(self) -> bool:
        return False

    def freed(self, t: int) -> None:
        self.freed_at = t


async def connections_used(gaps_s: list[float]) -> int:
    """Requests with these pauses before each; the connections the server saw."""
    seen = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        while await reader.readuntil(b"\r\n\r\n"):  # each request: headers, no body
            writer.write(ANSWER)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}", limit=4, ssl_ctx=False, connect_s=5, idle_s=5,
                total_s=5, follow_redirects=False)
    head = pool.head("GET", "/", {})
    for gap in gaps_s:
        await asyncio.sleep(gap)
        body = Body()
        await pool.exchange("GET", head, None, body)
        assert body.data == b"ok"
    pool.close()
    server.close()
    return seen


def test_a_connection_idle_past_the_limit_is_not_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_IDLE_S", 0.2)
    assert asyncio.run(connections_used([0, 0.01, 0.01])) == 1  # warm: reused
    assert asyncio.run(connections_used([0, 0.3, 0.01])) == 2  # idle 0.3 s: a new one


class Stream(Body):
    """A stream's receiver: its answer ends with the `[DONE]` event."""

    last = 0

    @property
    def ended(self) -> bool:
        return b"data: [DONE]\n\n" in self.data


HELD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"9\r\ndata: x\n\n\r\ne\r\ndata: [DONE]\n\n\r\n")


async def held_after_done(send: Callable[[str, Stream], Awaitable[object]]) -> int:
    """Two streams from a server that holds each response open 30 s after its
    `[DONE]` before its chunked terminator; the connections it saw."""
    seen = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(HELD)
            await writer.drain()
            await asyncio.sleep(30)
            writer.write(b"0\r\n\r\n")

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for _ in range(2):
        answer = Stream()
        await asyncio.wait_for(send(url, answer), 10)  # the idle timeout is 1 s
        assert answer.data == b"data: x\n\ndata: [DONE]\n\n"
    server.close()
    return seen


def test_a_stream_held_open_after_its_end_is_whole_and_its_connection_goes() -> None:
    """Its answer is whole at [DONE]: no timeout (it was one, `waited 1 s for
    a byte`: an audit), and the held connection is not reused."""
    async def lean(url: str, answer: Stream) -> None:
        pool = Pool(url, limit=1, ssl_ctx=False, connect_s=5, idle_s=1, total_s=60,
                    follow_redirects=False)
        await pool.exchange("GET", pool.head("GET", "/", {}), None, answer)
        assert pool._open == 0  # closed, not kept
        pool.close()

    async def aiohttp_one(url: str, answer: Stream) -> None:
        req = PreparedRequest(method="GET", path="/", headers={}, build_body=lambda *a: (b"", None),
                              new_stream_parser=None, parse_body=lambda raw: ParsedResponse())
        transport = AiohttpTransport(url, [[req]], Client(timeouts=Timeouts(first_byte=1)))
        await transport.send(0, 0, None, answer)  # type: ignore[arg-type]  # a stand-in Answer
        await transport.close()

    assert asyncio.run(held_after_done(lean)) == 2
    assert asyncio.run(held_after_done(aiohttp_one)) == 2


def test_a_reset_that_ends_a_close_delimited_body_is_a_failure() -> None:
    """A body with no length ends at the close: a FIN ends it whole, an RST
    (SO_LINGER 0) cuts it (it was read as whole: an audit); an error's body
    ended so stays the HTTP error it is."""
    async def answer(reset: bool, body: Body | None = None) -> bytes:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npartial")
            await writer.drain()
            await asyncio.sleep(0.05)
            if reset:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", limit=1,
                    ssl_ctx=False, connect_s=5, idle_s=5, total_s=5, follow_redirects=False)
        body = body or Body()
        try:
            await pool.exchange("GET", pool.head("GET", "/", {}), None, body)
        finally:
            pool.close()
            server.close()
        return body.data

    assert asyncio.run(answer(reset=False)) == b"partial"
    with pytest.raises(http1.ServerDisconnected, match="reset"):
        asyncio.run(answer(reset=True))
    refused = Body()
    refused.ok = False  # the receiver's verdict on its status (a 4xx, say)
    assert asyncio.run(answer(reset=True, body=refused)) == b"partial"
