"""A pass-through HTTP proxy on its own thread and loop that stamps what
crosses it for each POST: the request's arrival, each SSE event with
content as it passes on, and the answer's end (time.monotonic). Put in
front of a real engine, it times the very requests a client under test
sends, so the two are compared request for request, with no phase between
them for the host to drift in (this module holds no tests)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass
class Passage:
    arrived: float  # the whole request read
    events: list[float] = field(default_factory=list)  # each `data: {` line with content
    ended: float = 0.0  # the answer's last bytes passed on


@contextlib.contextmanager
def wire_proxy(upstream: str) -> Iterator[tuple[str, list[Passage]]]:
    """(the proxy's URL, the log of its POSTs, in order of arrival)."""
    ready = threading.Event()
    box: dict[str, Any] = {}
    log: list[Passage] = []

    async def main() -> None:
        session = aiohttp.ClientSession(auto_decompress=False)

        async def forward(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            passage = Passage(time.monotonic())
            if request.method == "POST":
                log.append(passage)
            headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
            async with session.request(request.method, upstream + request.path_qs, data=raw,
                                       headers=headers) as r:
                out = web.StreamResponse(status=r.status, headers={
                    "Content-Type": r.headers.get("Content-Type", "application/json")})
                await out.prepare(request)
                async for line in r.content:  # line by line, as an SSE client reads
                    if line.startswith(b"data: {") and b'"content":"' in line:
                        passage.events.append(time.monotonic())
                    await out.write(line)
                passage.ended = time.monotonic()
                await out.write_eof()
            return out

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        box["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        box["loop"], box["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        await box["stop"].wait()
        await session.close()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(10), "the wire proxy did not start"
    try:
        yield box["url"], log
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
