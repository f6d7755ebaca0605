"""aiohttp application of the simulated OpenAI-compatible inference server.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions`` (see
``generate.py``), ``POST /v1/embeddings``, ``GET /v1/models``, ``GET
/health`` (200 ``{"status": "ok"}`` when every replica is ready; otherwise
the replicas by state, and 503 when none can serve: all dead, or loading)
and ``GET /metrics`` (see ``metrics.py``).

The serving model (``serving.py``), the fault schedule (``injector.py``,
``timeline.py``) and the clock origin are created when the application
starts, on its event loop: fault times count from that moment.
"""

from __future__ import annotations

import asyncio
import json
import random

from aiohttp import web

from . import openai_wire as wire
from .config import SimConfig
from .embeddings import embedding_response, parse_embedding_request
from .generate import cut, generate
from .injector import HEALTHY, Fate, Injector
from .metrics import CONTENT_TYPE as _PROM
from .metrics import Metrics
from .serving import COLD, DEAD, LOADING, READY, Deployment, ReplicaLost
from .timeline import Timeline

_JSON = "application/json"
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
        self.wrong_vocab = wire.Vocabulary(config.seed, wire.WRONG_WORDS)
        self.ids = random.Random(config.seed)
        self.ttft_s = config.ttft_ms / 1000.0
        self.prefill_s_per_token = config.prefill_ms_per_token / 1000.0
        self.itl_s = config.itl_ms / 1000.0
        self.itl_s_per_seq = config.itl_ms_per_seq / 1000.0
        self.metrics = Metrics(config.model)
        self.deployment = Deployment(config)
        # Set by start(), on the serving loop.
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.origin = 0.0
        self.injector = Injector((), config.seed, 0.0)
        self.timeline = Timeline((), 0.0)
        self._timers: list[asyncio.TimerHandle] = []
        self._models = json.dumps({
            "object": "list",
            "data": [{"id": config.model, "object": "model", "created": 0,
                      "owned_by": "loadkit"}],
        }).encode()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        """Fix the clock origin, start loading the model, schedule deaths."""
        self.loop = loop = asyncio.get_running_loop()
        self.origin = now = loop.time()
        faults = self.config.faults
        self.injector = Injector(faults, self.config.seed, now)
        self.timeline = Timeline(faults, now)
        self.deployment.start(loop, now)
        for f in faults:
            if f.kind == "replica_death":
                assert f.replica is not None
                self._timers.append(loop.call_at(now + f.start, self._kill, f.replica))
                if f.end is not None:
                    self._timers.append(loop.call_at(now + f.end, self._revive, f.replica))

    async def stop(self, app: web.Application) -> None:
        for timer in self._timers:
            timer.cancel()

    def _kill(self, replica: int) -> None:
        self.deployment.kill(replica, self.loop.time())

    def _revive(self, replica: int) -> None:
        self.deployment.revive(replica, self.loop.time())

    # -- inference endpoints ---------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await generate(self, request, wire.CHAT, "chatcmpl-")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await generate(self, request, wire.TEXT, "cmpl-")

    async def embeddings(self, request: web.Request) -> web.Response:
        loop, cfg = self.loop, self.config
        t0 = loop.time()
        try:
            req = parse_embedding_request(await request.read(), cfg.embedding_dim)
        except wire.RequestError as exc:
            return self.bad_request(exc)
        refusal = self.refuse(request, t0)
        if refusal is not None:
            return refusal
        dep = self.deployment
        dep.enter(t0)
        try:
            rep = dep.route()
            if rep is None:
                return self.unavailable()
            fate = self.injector.fate(t0, 1) if self.injector.decides_fate else HEALTHY
            self.metrics.requests_total += 1
            loading = rep.state == LOADING
            try:
                await dep.until_loaded(rep)  # no batch seat: only a cold start holds it
            except ReplicaLost:
                cut(request)
                return web.Response()
            start = loop.time() if loading else t0
            work = (cfg.embedding_ms + cfg.embedding_ms_per_token * req.tokens) / 1000.0
            work *= fate.slowdown * self.timeline.speed_factor(rep.index, start)
            dep.extra_running += 1
            try:
                await asyncio.sleep(self.timeline.advance(rep.index, start, work)
                                    - loop.time())
            finally:
                dep.extra_running -= 1
            if fate.cut_at >= 0 or rep.state == DEAD:
                cut(request)
                return web.Response()
            seed = f"{cfg.seed}:b" if fate.wrong_content else str(cfg.seed)
            body = embedding_response(req, seed, cfg.model)
            if fate.malformed_at >= 0:
                body = wire.broken(body)
            self.metrics.prompt_tokens += req.tokens
            self.metrics.finished += 1
            self.metrics.e2e.observe(loop.time() - t0)
            return web.Response(body=body, content_type=_JSON,
                                headers=self.version_headers(fate))
        finally:
            dep.leave(loop.time())

    # -- auxiliary endpoints -----------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models, content_type=_JSON)

    async def health(self, request: web.Request) -> web.Response:
        states = self.deployment.states(self.loop.time())
        if all(s == READY for s in states):
            return web.Response(body=b'{"status":"ok"}', content_type=_JSON)
        if READY in states:
            status, code = "degraded", 200
        elif COLD in states:  # scaled to zero: healthy, the next request loads it
            status, code = "cold", 200
        else:
            status, code = ("loading" if LOADING in states else "dead"), 503
        counts = {s: states.count(s) for s in (READY, COLD, LOADING, DEAD)}
        return web.json_response({"status": status, "replicas": counts}, status=code)

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        body = self.metrics.render(self.deployment, self.loop.time(), self.injector.injected)
        return web.Response(body=body, headers={"Content-Type": _PROM})

    # -- helpers shared with generate.py -----------------------------------------------

    def refuse(self, request: web.Request, now: float) -> web.Response | None:
        """The fault-injected 429 or 5xx for this request, if any."""
        if not self.injector.screens:
            return None
        tenant = request.headers.get(self.config.tenant_header) or "anonymous"
        rej = self.injector.screen(now, tenant)
        if rej is None:
            return None
        headers = {} if rej.retry_after is None else {"Retry-After": str(rej.retry_after)}
        return web.Response(status=rej.status, content_type=_JSON, headers=headers,
                            body=wire.error_body(rej.message, rej.err_type, code=rej.code))

    def priority(self, request: web.Request) -> int:
        """The request's queue priority (lower first); 0 under FCFS."""
        if self.config.queue_policy != "priority":
            return 0
        raw = request.headers.get(self.config.priority_header)
        if raw is None:
            return 0
        try:
            return int(raw)
        except ValueError:
            raise wire.RequestError(f"header {self.config.priority_header} must be an "
                                    f"integer, got {raw[:40]!r}") from None

    def version_headers(self, fate: Fate) -> dict[str, str]:
        """Which version answered, once a version_b fault is configured."""
        return {"X-Loadkit-Sim-Version": fate.version} if self.injector.versioned else {}

    def bad_request(self, exc: wire.RequestError, code: str | None = None) -> web.Response:
        return web.Response(status=400, content_type=_JSON,
                            body=wire.error_body(str(exc), param=exc.param, code=code))

    def unavailable(self) -> web.Response:
        return web.Response(status=503, content_type=_JSON, body=wire.error_body(
            "no replica is alive to serve this request", "server_error"))


SIMULATOR_KEY = web.AppKey("loadkit_sim", Simulator)


def build_app(config: SimConfig) -> web.Application:
    """Create the simulator application for ``config``.

    The :class:`Simulator` (state and counters) is reachable as
    ``app[SIMULATOR_KEY]`` for tests and for future extensions.
    """
    sim = Simulator(config)
    app = web.Application(client_max_size=_MAX_BODY)
    app[SIMULATOR_KEY] = sim
    app.on_startup.append(sim.start)
    app.on_cleanup.append(sim.stop)
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_post("/v1/completions", sim.completions)
    app.router.add_post("/v1/embeddings", sim.embeddings)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/metrics", sim.metrics_endpoint)
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
    # handler_cancellation: a client that hangs up frees its batch seat and
    # KV-cache at once, as a real server aborts a disconnected request.
    runner = web.AppRunner(build_app(config), access_log=None,
                           shutdown_timeout=_SHUTDOWN_GRACE_S, handler_cancellation=True)
    await runner.setup()
    try:
        # A deep backlog so bursts of hundreds of connects are not dropped.
        site = web.TCPSite(runner, host, port, backlog=1024)
        await site.start()
        return runner, runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
