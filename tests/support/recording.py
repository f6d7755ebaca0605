"""The simulator behind a recording proxy, on its own thread and loop: what
the server was sent, when it arrived and when its answer ended, seen on the
wire (this module holds no tests)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
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


@dataclass
class Recording:
    url: str
    exchanges: list[Exchange] = field(default_factory=list)
    sim: Simulator | None = None  # its state, for what only the server knows

    def posts(self) -> list[Exchange]:
        return [e for e in self.exchanges if e.method == "POST"]


@contextlib.contextmanager
def recording_sim(proxied: bool = True, **config: Any) -> Iterator[Recording]:
    """Yield the proxy's URL and its log once both listen; stop both after.
    `proxied=False`: the simulator's own URL (a client's hang-up reaches it,
    which the proxy would not pass on), with no log."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        runner, port = await serve(SimConfig.from_mapping(config), "127.0.0.1", 0)
        upstream = f"http://127.0.0.1:{port}"
        session = aiohttp.ClientSession()
        record = Recording("", sim=runner.app[SIMULATOR_KEY])

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
                parts = []
                async for chunk in r.content.iter_any():
                    # Stamped before it goes on: the client cannot have the
                    # answer's last byte before this.
                    exchange.ended = time.monotonic()
                    parts.append(chunk)
                    await out.write(chunk)
                await out.write_eof()
            exchange.answer = b"".join(parts)
            return out

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        proxy = web.AppRunner(app, access_log=None)
        await proxy.setup()
        site = web.TCPSite(proxy, "127.0.0.1", 0)
        await site.start()
        record.url = f"http://127.0.0.1:{proxy.addresses[0][1]}" if proxied else upstream
        stop = asyncio.Event()
        box.update(record=record, stop=stop, loop=asyncio.get_running_loop())
        ready.set()
        await stop.wait()
        await session.close()
        await proxy.cleanup()
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the simulator and its proxy did not start"
    try:
        yield box["record"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
