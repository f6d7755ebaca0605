"""The two ways the engine can put a request on the wire (`client.transport`).

- `lean` (default): loadkit's own HTTP/1.1 client (`engine.http1`), built
  for the least time between the clock and the socket.
- `aiohttp`: aiohttp's ClientSession, kept as a cross-check of the lean
  path (the fault and measurement tests run over both).

Each prepares what it can per scenario before the run, so `send` only adds
the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from yarl import URL

from loadkit.engine.adapter import PreparedRequest
from loadkit.engine.answer import Answer
from loadkit.engine.client import make_session, ssl_context
from loadkit.engine.http1 import END_GRACE_S, Pool
from loadkit.workload.models import Client

now_ns = time.monotonic_ns


class Transport(Protocol):
    async def send(self, tenant: int, scenario: int, body: bytes | None,
                   answer: Answer) -> int:
        """Send, feed the answer; return when its last byte was read (ns)."""
        ...

    async def close(self) -> None: ...


def open_transport(base_url: str, requests: list[list[PreparedRequest]],
                   client: Client) -> Transport:
    http: Transport = (AiohttpTransport(base_url, requests, client)
                       if client.transport == "aiohttp"
                       else LeanTransport(base_url, requests, client))
    if any(r.grpc is not None for row in requests for r in row):  # KServe v2 over gRPC
        from loadkit.engine.grpc_client import GrpcTransport
        return GrpcTransport(requests, client, http)
    return http


class LeanTransport:
    def __init__(self, base_url: str, requests: list[list[PreparedRequest]],
                 client: Client) -> None:
        t = client.timeouts
        self.pool = Pool(base_url, limit=client.connections, ssl_ctx=ssl_context(client),
                         connect_s=t.connect, idle_s=t.first_byte, total_s=t.total,
                         follow_redirects=client.follow_redirects)
        self.heads = [[(r.method, self.pool.head(r.method, r.path, r.headers)) for r in row]
                      for row in requests]

    async def send(self, tenant: int, scenario: int, body: bytes | None,
                   answer: Answer) -> int:
        method, head = self.heads[tenant][scenario]
        await self.pool.exchange(method, head, body, answer)
        return answer.last or now_ns()  # stamped when the last bytes were read

    async def close(self) -> None:
        self.pool.close()


class AiohttpTransport:
    def __init__(self, base_url: str, requests: list[list[PreparedRequest]],
                 client: Client) -> None:
        self.session = make_session(client)
        self.follow = client.follow_redirects
        # Parsed once: yarl parses a str URL on every request otherwise.
        self.targets = [[(r, URL(base_url + r.path)) for r in row] for row in requests]

    async def send(self, tenant: int, scenario: int, body: bytes | None,
                   answer: Answer) -> int:
        req, url = self.targets[tenant][scenario]
        async with self.session.request(req.method, url, data=body, headers=req.headers,
                                        allow_redirects=self.follow,
                                        trace_request_ctx=answer) as resp:
            answer.status(resp.status, now_ns())
            try:
                if answer.wants_body:
                    async for chunk in resp.content.iter_any():
                        answer.body(chunk, now_ns())
                        if not answer.wants_body or answer.ended:
                            break
                if answer.ended:  # the rest gets END_GRACE_S, as the lean client's
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(END_GRACE_S):
                            while answer.wants_body and (chunk := await resp.content.readany()):
                                answer.body(chunk, now_ns())
            except BaseException:
                resp.close()  # cut (token or size cap, cancelled): close, as the lean one does
                raise
        return answer.last or now_ns()  # stamped when the last bytes were read, as lean's

    async def close(self) -> None:
        await self.session.close()

