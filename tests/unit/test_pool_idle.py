"""The lean client's keep-alive pool (loadkit/engine/http1.py) against a
loopback server: a connection idle past MAX_IDLE_S is not reused, as a server
may close it in the instant it is reused (a request it never saw, counted as
`reset`)."""

from __future__ import annotations

import asyncio

import pytest

from loadkit.engine import http1
from loadkit.engine.http1 import Pool

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"


class Body:
    wants_body = True

    def __init__(self) -> None:
        self.data = b""

    def status(self, code: int, t: int) -> None:
        assert code == 200

    def body(self, data: bytes, t: int) -> None:
        self.data += data


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
