"""The open-loop engine: release each request at its intended time.

A dispatcher walks the seeded schedule and starts every request at its slot,
whether or not earlier ones have answered; latency is charged from the slot
(`intended`), so a stalled server cannot hide behind a polite client
(coordinated omission). An optional in-flight cap counts arrivals it cannot
start as `dropped`, never delaying them silently.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from loadkit.arrivals import Slot
from loadkit.engine.client import ResponseTooLarge, classify, make_session
from loadkit.errors import ErrorKind
from loadkit.engine.adapter import PreparedRequest, ProtocolError
from loadkit.record.recorder import Interval, Recorder, RequestRecord
from loadkit.workload.models import Client

now_ns = time.monotonic_ns


@dataclass
class Progress:
    """A live view of the run for the console; read-only outside the engine."""

    total_s: float
    scheduled: int = 0
    finished: int = 0
    errors: int = 0
    dropped: int = 0
    in_flight: int = 0
    last: Interval | None = None


@dataclass
class Plan:
    """What the engine needs: where to send, what, and when."""

    base_url: str
    requests: list[list[PreparedRequest]]  # [tenant][scenario]
    scenario_names: list[str]
    tenant_names: list[str]
    client: Client
    warmup_s: float
    duration_s: float
    interval_s: float


@dataclass
class Engine:
    plan: Plan
    recorder: Recorder
    on_interval: Callable[[Progress], None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    progress: Progress = field(init=False)
    dropped: Counter = field(default_factory=Counter)  # (phase, scenario, tenant)
    unfinished: int = 0

    def __post_init__(self) -> None:
        self.progress = Progress(total_s=self.plan.warmup_s + self.plan.duration_s)
        self._tasks: set[asyncio.Task] = set()
        # Parsed once: yarl parses a str URL on every request otherwise.
        self._urls = [[URL(self.plan.base_url + r.path) for r in row]
                      for row in self.plan.requests]

    async def run(self, slots: Iterable[Slot]) -> None:
        """Send the whole schedule, wait for stragglers, close the last interval."""
        start = self.recorder.start_ns
        async with make_session(self.plan.client) as session:
            ticker = asyncio.create_task(self._tick())
            try:
                await self._dispatch(session, slots, start)
                await self._drain()
            finally:
                ticker.cancel()
                for t in list(self._tasks):
                    t.cancel()
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
        self.progress.last = self.recorder.rotate(now_ns())

    async def _dispatch(self, session: aiohttp.ClientSession, slots: Iterable[Slot],
                        start: int) -> None:
        cap = self.plan.client.max_in_flight
        warmup_ns = int(self.plan.warmup_s * 1e9)
        sleep = asyncio.sleep
        for slot in slots:
            offset = int(slot.at * 1e9)
            intended = start + offset
            while (delay := intended - now_ns()) > 0:
                if self.stop.is_set():
                    return
                await sleep(delay / 1e9)
            if self.stop.is_set():
                return
            phase = "warmup" if offset < warmup_ns else "measure"
            self.progress.scheduled += 1
            if cap is not None and len(self._tasks) >= cap:
                key = (phase, self.plan.scenario_names[slot.scenario],
                       self.plan.tenant_names[slot.tenant])
                self.dropped[key] += 1
                self.progress.dropped += 1
                continue
            task = asyncio.create_task(self._send(session, slot, phase, intended))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """Let in-flight requests finish, bounded by the total timeout or a stop.

        Whatever is still running afterwards is cancelled and counted as
        `unfinished`; nothing already measured is lost."""
        deadline = time.monotonic() + self.plan.client.timeouts.total + 1.0
        # Polling, not asyncio.wait(): that adds a callback to every task per call.
        while self._tasks and not self.stop.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _tick(self) -> None:
        """Rotate the recorder's interval on a fixed grid from the start."""
        step = int(self.plan.interval_s * 1e9)
        k = 1
        while True:
            await asyncio.sleep(max(0.0, (self.recorder.start_ns + k * step - now_ns()) / 1e9))
            self.progress.last = self.recorder.rotate(now_ns())
            self.progress.in_flight = len(self._tasks)
            if self.on_interval:
                self.on_interval(self.progress)
            k += 1

    async def _send(self, session: aiohttp.ClientSession, slot: Slot, phase: str,
                    intended: int) -> None:
        req = self.plan.requests[slot.tenant][slot.scenario]
        rec = RequestRecord(self.plan.tenant_names[slot.tenant],
                            self.plan.scenario_names[slot.scenario], phase, intended, now_ns())
        try:
            await self._exchange(session, self._urls[slot.tenant][slot.scenario], req, rec)
        except ProtocolError as exc:
            rec.error, rec.message = ErrorKind.PROTOCOL, str(exc)[:300]
        except asyncio.CancelledError:
            self.unfinished += 1
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is a measurement
            rec.error, rec.message = classify(exc)
        rec.end = rec.end or now_ns()
        self.recorder.record(rec)
        self.progress.finished += 1
        if rec.error is not None:
            self.progress.errors += 1

    async def _exchange(self, session: aiohttp.ClientSession, url: URL,
                        req: PreparedRequest, rec: RequestRecord) -> None:
        cap = self.plan.client.max_response_bytes
        async with session.request(req.method, url, data=req.body, headers=req.headers,
                                   allow_redirects=self.plan.client.follow_redirects) as resp:
            status = resp.status
            if status >= 300:
                body = await resp.content.read(300)
                rec.end = now_ns()
                rec.error = (ErrorKind.HTTP_5XX if status >= 500 else
                             ErrorKind.HTTP_4XX if status >= 400 else ErrorKind.PROTOCOL)
                hint = " (redirect not followed; see client.follow_redirects)" \
                    if status < 400 else ""
                rec.message = f"HTTP {status}{hint}: {body.decode('utf-8', 'replace')}"
                return
            if req.new_stream_parser is not None:
                parser = req.new_stream_parser()
                events: list[int] = []
                size = 0
                async for chunk in resp.content.iter_any():
                    t = now_ns()
                    size += len(chunk)
                    if size > cap:
                        raise ResponseTooLarge(f"response exceeds {cap} bytes")
                    n = parser.feed(chunk)
                    if n:
                        if rec.first is None:
                            rec.first = t
                        events.extend((t,) * n)
                rec.end = now_ns()
                rec.events = events
                parsed = parser.finish()
            else:
                raw = await _read_capped(resp, cap)
                rec.end = now_ns()
                parsed = req.parse_body(raw)
            rec.output_tokens = parsed.output_tokens
            rec.token_source = parsed.token_source


async def _read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    length = resp.content_length
    if length is not None:
        if length > cap:
            raise ResponseTooLarge(f"response of {length} bytes exceeds {cap} bytes")
        return await resp.read()
    parts, size = [], 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise ResponseTooLarge(f"response exceeds {cap} bytes")
        parts.append(chunk)
    return b"".join(parts)
