"""Shared helpers for the simulator's tests (this module holds no tests).

Servers run in-process on a real loopback socket with an ephemeral port, so
a test reads the simulator's clock origin (``sim.context.origin``, loop
time) and schedules its own requests on the same loop clock; everything it
asserts is observed over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from loadkit.sim import SimConfig, serve
from loadkit.sim.server import SIMULATOR_KEY, Simulator

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"

T = TypeVar("T")
# What the helpers below return: a health check (status, JSON), a streamed
# request (send time, token times), a plain one (latency, status, headers, JSON).
Health = tuple[int, dict[str, Any]]
Streamed = tuple[float, list[float]]
Posted = tuple[float, int, dict[str, str], dict[str, Any]]


def run_async(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run ``coro`` on a fresh loop, failing the test if it exceeds timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


@dataclass
class Live:
    url: str
    session: aiohttp.ClientSession
    sim: Simulator

    def now(self) -> float:
        """Seconds since the simulator started (its fault schedules' clock)."""
        ctx = self.sim.context
        return ctx.loop.time() - ctx.origin

    async def at(self, t: float) -> None:
        """Sleep until ``t`` seconds after the simulator started."""
        await asyncio.sleep(t - self.now())

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(self.url + "/metrics") as r:
            assert r.status == 200
            return parse_metrics(await r.text())

    async def health(self) -> Health:
        async with self.session.get(self.url + "/health") as r:
            return r.status, await r.json()


@contextlib.asynccontextmanager
async def live_sim(config: SimConfig | None = None, **fields: Any) -> AsyncIterator[Live]:
    config = config or SimConfig.from_mapping(fields)
    runner, port = await serve(config, "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            yield Live(f"http://127.0.0.1:{port}", s, runner.app[SIMULATOR_KEY])
    finally:
        await runner.cleanup()


def chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "x", "messages": [{"role": "user", "content": content}], **extra}


def prompt_ids(tokens: int, **extra: Any) -> dict[str, Any]:
    """A completions body whose prompt is exactly ``tokens`` token ids."""
    return {"model": "x", "prompt": [1] * tokens, **extra}


async def timed_stream(live: Live, body: dict[str, Any], path: str = CHAT,
                       headers: dict[str, str] | None = None) -> Streamed:
    """POST a streaming request; return (send time, arrival time of each token),
    in seconds on the simulator's clock.  A cut connection ends the list."""
    sent = live.now()
    times = []
    async with live.session.post(live.url + path, json={**body, "stream": True},
                                 headers=headers) as r:
        assert r.status == 200, await r.text()
        try:
            async for line in r.content:
                if line.startswith(b"data: {"):  # a token (no usage was asked for)
                    times.append(live.now())
        except aiohttp.ClientPayloadError:
            pass
    return sent, times


async def timed_post(live: Live, body: dict[str, Any], path: str = CHAT,
                     headers: dict[str, str] | None = None) -> Posted:
    """POST a non-streaming request; return (latency s, status, headers, json)."""
    sent = live.now()
    async with live.session.post(live.url + path, json=body, headers=headers) as r:
        doc = await r.json(content_type=None)
        return live.now() - sent, r.status, dict(r.headers), doc


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?'
                     r" (-?[0-9.e+-]+|\+Inf|NaN)$")


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {'name{labels}': value}; asserts each line's shape
    and that every sample's family was declared with # TYPE before it."""
    declared: set[str] = set()
    out: dict[str, float] = {}
    assert text.endswith("\n")
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
            continue
        if line.startswith("# HELP "):
            continue
        m = _SAMPLE.match(line)
        assert m, f"malformed exposition line: {line!r}"
        family = re.sub(r"_(bucket|sum|count)$", "", m[1])
        assert m[1] in declared or family in declared, f"no # TYPE before {line!r}"
        out[m[1] + (m[2] or "")] = float(m[3])
    return out


def gauge(metrics: dict[str, float], name: str) -> float:
    """The value of a single-series family, whatever its labels."""
    found = [v for k, v in metrics.items() if k == name or k.startswith(name + "{")]
    assert len(found) == 1, (name, found)
    return found[0]


def finished(metrics: dict[str, float], reason: str) -> float:
    """`vllm:request_success_total` of one finished_reason (length or abort),
    summed over models."""
    return sum(v for k, v in metrics.items() if k.startswith("vllm:request_success_total{")
               and f'finished_reason="{reason}"' in k)


def histogram(metrics: dict[str, float], name: str) -> tuple[float, float]:
    """(count, sum) of a single-series histogram family: the server's own clock."""
    return gauge(metrics, name + "_count"), gauge(metrics, name + "_sum")
