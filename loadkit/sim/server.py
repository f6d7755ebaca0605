"""aiohttp application of the simulated OpenAI-compatible inference server.

Timing model: a request arriving at loop time ``t0`` emits token ``i``
(0-based) at ``t0 + ttft + i * itl``.  Every sleep targets such an absolute
deadline, so scheduler lateness on one token is not carried into the next
and inter-token gaps do not drift, even with hundreds of concurrent streams.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

from aiohttp import web

from . import openai_wire as wire
from .config import SimConfig

_JSON = "application/json"
_PROM = "text/plain; version=0.0.4; charset=utf-8"
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # keep reverse proxies from batching events
}
# How long stop waits for in-flight requests before cancelling them (aiohttp
# waits up to twice this).  A simulator holds nothing worth waiting for, and
# SIGTERM must not hang behind long streams.
_SHUTDOWN_GRACE_S = 0.5
# Long-context load tests send prompts far above aiohttp's 1 MiB default.
_MAX_BODY = 64 * 1024 * 1024


class Simulator:
    """Per-app state and request handlers; one instance per application."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.vocab = wire.Vocabulary(config.seed)
        self._ids = random.Random(config.seed)
        self._ttft = config.ttft_ms / 1000.0
        self._itl = config.itl_ms / 1000.0
        self.requests_total = 0
        self.requests_running = 0
        self._models = json.dumps({
            "object": "list",
            "data": [{"id": config.model, "object": "model", "created": 0,
                      "owned_by": "loadkit"}],
        }).encode()

    # -- inference endpoints -------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, wire.CHAT, "chatcmpl-")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, wire.TEXT, "cmpl-")

    async def _generate(self, request: web.Request, kind: str,
                        id_prefix: str) -> web.StreamResponse:
        # t0 is taken before the body is read: the simulated clock starts
        # when the request arrives, as a client-side TTFT would see it.
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            req = wire.parse_request(await request.read(), kind,
                                     self.config.output_tokens)
        except wire.RequestError as exc:
            return web.Response(status=400, content_type=_JSON,
                                body=wire.error_body(str(exc), param=exc.param))

        self.requests_total += 1
        self.requests_running += 1
        try:
            rid = f"{id_prefix}{self._ids.getrandbits(96):024x}"
            created = int(time.time())
            if req.stream:
                return await self._stream(request, req, rid, created, loop, t0)
            n = req.output_tokens
            await _sleep_until(loop, t0 + self._ttft + (n - 1) * self._itl)
            body = wire.full_response(req, rid, created, self.config.model,
                                      self.vocab.text(n))
            return web.Response(body=body, content_type=_JSON)
        finally:
            self.requests_running -= 1

    async def _stream(self, request: web.Request, req: wire.GenRequest,
                      rid: str, created: int, loop: asyncio.AbstractEventLoop,
                      t0: float) -> web.StreamResponse:
        frames = wire.StreamFrames(req, rid, created, self.config.model)
        words = self.vocab.json
        n_words = len(words)
        resp = web.StreamResponse(headers=_SSE_HEADERS)
        await resp.prepare(request)  # headers go out now, before prefill
        first, last = t0 + self._ttft, req.output_tokens - 1
        itl = self._itl
        try:
            for i in range(req.output_tokens):
                # Multiply rather than accumulate: no floating-point drift.
                await _sleep_until(loop, first + i * itl)
                head = frames.first_head if i == 0 else frames.head
                tail = frames.last_tail if i == last else frames.tail
                await resp.write(head + words[i % n_words] + tail)
            if frames.usage_event is not None:
                await resp.write(frames.usage_event)
            await resp.write(wire.DONE_EVENT)
            await resp.write_eof()
        except ConnectionResetError:
            # The client went away mid-stream (normal under load tests that
            # cancel requests); stop generating and free the slot.
            pass
        return resp

    # -- auxiliary endpoints -------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models, content_type=_JSON)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type=_JSON)

    async def metrics(self, request: web.Request) -> web.Response:
        text = (
            "# HELP loadkit_sim_requests_total Inference requests accepted.\n"
            "# TYPE loadkit_sim_requests_total counter\n"
            f"loadkit_sim_requests_total {self.requests_total}\n"
            "# HELP loadkit_sim_requests_running Inference requests in flight.\n"
            "# TYPE loadkit_sim_requests_running gauge\n"
            f"loadkit_sim_requests_running {self.requests_running}\n"
        )
        return web.Response(body=text.encode(), headers={"Content-Type": _PROM})


SIMULATOR_KEY = web.AppKey("loadkit_sim", Simulator)


def build_app(config: SimConfig) -> web.Application:
    """Create the simulator application for ``config``.

    The :class:`Simulator` (state and counters) is reachable as
    ``app[SIMULATOR_KEY]`` for tests and for future extensions.
    """
    sim = Simulator(config)
    app = web.Application(client_max_size=_MAX_BODY)
    app[SIMULATOR_KEY] = sim
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_post("/v1/completions", sim.completions)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/metrics", sim.metrics)
    return app


async def serve(config: SimConfig, host: str = "127.0.0.1",
                port: int = 0) -> tuple[web.AppRunner, int]:
    """Start the simulator on ``host:port`` and return ``(runner, port)``.

    ``port=0`` binds an ephemeral port; the actual one is read back from the
    listening socket.  Call ``await runner.cleanup()`` to stop.  If ``host``
    resolves to several addresses, the first socket's port is returned.
    """
    if not 0 <= port <= 65535:  # the OS would silently wrap larger values
        raise ValueError(f"port must be in 0..65535, got {port}")
    # No access log: formatting a log line per request costs more than the
    # simulated work.
    runner = web.AppRunner(build_app(config), access_log=None,
                           shutdown_timeout=_SHUTDOWN_GRACE_S)
    await runner.setup()
    try:
        # A deep backlog so bursts of hundreds of connects are not dropped.
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        return runner, runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    # Still yields when the deadline has passed (delay <= 0), so a zero-delay
    # config cannot starve other streams.
    await asyncio.sleep(deadline - loop.time())
