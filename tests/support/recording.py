"""A recording proxy on its own thread and loop, in front of the simulator or
any server: what the server was sent, when it arrived, when each token event
and the answer's last bytes passed on, seen on the wire (this module holds no
tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from loadkit.sim import SimConfig, serve
from loadkit.sim.server import SIMULATOR_KEY, Simulator

FORWARDED = ("Authorization", "x-api-key", "anthropic-version", "Content-Type")


@dataclass
class Exchange:
    method: str
    path: str
    body: dict[str, Any]
    arrived: float  # time.monotonic() when the request reached the proxy
    ended: float = 0.0  # when the last bytes of the answer reached it
    answer: bytes = b""
    events: list[float] = field(default_factory=list)  # each SSE `data: {` line with content


@dataclass
class Recording:
    url: str
    exchanges: list[Exchange] = field(default_factory=list)
    sim: Simulator | None = None  # its state, for what only the server knows

    def posts(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST"]


@contextlib.asynccontextmanager
async def _proxy(upstream: str, record: Recording) -> AsyncIterator[str]:
    """Serve the proxy in front of `upstream` until closed; yield its URL."""
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        exchange = Exchange(request.method, request.path,
                            json.loads(raw) if raw else {}, time.monotonic())
        record.exchanges.append(exchange)
        headers = {k: v for k, v in request.headers.items() if k in FORWARDED}
        async with session.request(request.method, upstream + request.path_qs, data=raw,
                                   headers=headers) as r:
            out = web.StreamResponse(status=r.status, headers={
                "Content-Type": r.headers.get("Content-Type", "application/json")})
            await out.prepare(request)
            parts, tail = [], b""
            async for chunk in r.content.iter_any():
                # Stamped before it goes on: the client cannot have the
                # answer's last byte, or a token event, before this.
                exchange.ended = time.monotonic()
                *lines, tail = (tail + chunk).split(b"\n")
                exchange.events += [exchange.ended for line in lines
                                    if line.startswith(b"data: {") and b'"content":"' in line]
                parts.append(chunk)
                await out.write(chunk)
            await out.write_eof()
        exchange.answer = b"".join(parts)
        return out

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await session.close()
        await runner.cleanup()


@contextlib.contextmanager
def _on_a_thread(main: Callable[[Recording], contextlib.AbstractAsyncContextManager[None]]
                 ) -> Iterator[Recording]:
    """Run `main(record)` on a loop of its own until the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def run() -> None:
        record = Recording("")
        async with main(record):
            stop = asyncio.Event()
            box.update(record=record, stop=stop, loop=asyncio.get_running_loop())
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the recording proxy did not start"
    try:
        yield box["record"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)


def recording_proxy(upstream: str) -> contextlib.AbstractContextManager[Recording]:
    """A recording proxy in front of `upstream` (a base URL)."""
    @contextlib.asynccontextmanager
    async def main(record: Recording) -> AsyncIterator[None]:
        async with _proxy(upstream, record) as url:
            record.url = url
            yield

    return _on_a_thread(main)


def recording_sim(proxied: bool = True, **config: Any) -> contextlib.AbstractContextManager[
        Recording]:
    """The simulator behind a recording proxy, once both listen; both stop
    after. `proxied=False`: the simulator's own URL (a client's hang-up
    reaches it, which the proxy would not pass on), with no log."""
    @contextlib.asynccontextmanager
    async def main(record: Recording) -> AsyncIterator[None]:
        runner, port = await serve(SimConfig.from_mapping(config), "127.0.0.1", 0)
        upstream = f"http://127.0.0.1:{port}"
        record.sim = runner.app[SIMULATOR_KEY]
        try:
            async with _proxy(upstream, record) as url:
                record.url = url if proxied else upstream
                yield
        finally:
            await runner.cleanup()

    return _on_a_thread(main)
