"""aiohttp application of the simulated OpenAI-compatible inference server.

Endpoints: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``POST
/v1/responses`` (OpenAI's Responses API), ``POST /v1/messages`` (Anthropic's
Messages API), all through ``generate.py`` in their own wire format
(``openai_wire.py``, ``responses_wire.py``, ``anthropic_wire.py``); ``POST
/v1/embeddings``; rerank and score (``rerank.py``: ``POST /v1/rerank``,
``/rerank``, ``/v2/rerank``, ``/score``, ``/v1/score``); ``GET /v1/models``,
``GET /health`` (200 ``{"status": "ok"}`` when every replica is ready;
otherwise the replicas by state, and 503 when none can serve: all dead, or
loading) and ``GET /metrics`` (see ``metrics.py``).  ``POST
/reset_prefix_cache`` (vLLM's; 200, empty body) and ``POST``/``GET
/flush_cache`` (SGLang's; 200, ``Cache flushed.``) empty every replica's
prefix cache (``prefix_cache.py``), at once, requests in
flight or not; the prefix cache counters on ``/metrics`` keep counting.  With
``api_key`` set, the ``/v1`` endpoints and those two want it (``auth.py``).

The inference handlers get what they need through a ``SimContext``
(``context.py``): the serving model (``serving.py``), the fault schedule
(``injector.py``, ``timeline.py``) and the clock origin, fixed when the
application starts, on its event loop: fault times count from that moment.
Clients that hang up are noted in ``context.disconnects`` (``disconnects.py``;
also ``app[SIMULATOR_KEY].disconnects``); the generations that outlive their
handler (``ignore_disconnect``) are cancelled when the application stops.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque

from aiohttp import web

from . import anthropic_wire, responses_wire
from . import openai_wire as wire
from . import rerank as ranks
from .auth import FLUSH_CACHE_PATH, MESSAGES_PATH, RESET_PREFIX_CACHE_PATH, middleware
from .config import SimConfig
from .context import SimContext
from .disconnects import Disconnect
from .embeddings import embeddings
from .generate import generate
from .kserve_http import add_routes as add_kserve_routes
from .metrics import CONTENT_TYPE as _PROM
from .metrics import Metrics
from .responses import JSON
from .serving import COLD, DEAD, LOADING, READY, Deployment

# How long stop waits for in-flight requests before cancelling them (aiohttp
# waits up to twice this).  A simulator holds nothing worth waiting for, and
# SIGTERM must not hang behind long streams.
_SHUTDOWN_GRACE_S = 0.5
# Long-context load tests send prompts far above aiohttp's 1 MiB default.
_MAX_BODY = 64 * 1024 * 1024


class Simulator:
    """Per-app state and request handlers; one instance per application."""

    context: SimContext  # set by start(), on the serving loop

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.metrics = Metrics(config.model)
        self.deployment = Deployment(config)
        self._timers: list[asyncio.TimerHandle] = []
        self._models = json.dumps({
            "object": "list",
            "data": [{"id": config.model, "object": "model", "created": 0,
                      "owned_by": "loadkit"}],
        }).encode()

    # -- lifecycle -----------------------------------------------------------------

    async def start(self, app: web.Application) -> None:
        """Fix the clock origin, start loading the model, schedule deaths."""
        loop = asyncio.get_running_loop()
        self.context = ctx = SimContext.start(self.config, loop, self.deployment, self.metrics)
        now = ctx.origin
        self.deployment.start(loop, now)
        for f in self.config.faults:
            if f.kind == "replica_death":
                assert f.replica is not None
                self._timers.append(loop.call_at(now + f.start, self._kill, f.replica))
                if f.end is not None:
                    self._timers.append(loop.call_at(now + f.end, self._revive, f.replica))

    async def stop(self, app: web.Application) -> None:
        for timer in self._timers:
            timer.cancel()
        # Zombies (ignore_disconnect) outlive their handlers: end them here.
        detached = list(self.context.detached)
        for task in detached:
            task.cancel()
        await asyncio.gather(*detached, return_exceptions=True)

    @property
    def disconnects(self) -> deque[Disconnect]:
        """The clients that hung up, oldest first (``disconnects.py``)."""
        return self.context.disconnects

    def _kill(self, replica: int) -> None:
        self.deployment.kill(replica, self.context.loop.time())

    def _revive(self, replica: int) -> None:
        self.deployment.revive(replica, self.context.loop.time())

    # -- inference endpoints ---------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await generate(self.context, request, wire.CHAT_DIALECT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await generate(self.context, request, wire.TEXT_DIALECT)

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await generate(self.context, request, responses_wire.DIALECT)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        return await generate(self.context, request, anthropic_wire.DIALECT)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await embeddings(self.context, request)

    async def rerank(self, request: web.Request) -> web.StreamResponse:
        """vLLM's /v1/rerank and /rerank (TEI's when the body has `texts`)."""
        return await ranks.rerank(self.context, request, ranks.VLLM)

    async def cohere_rerank(self, request: web.Request) -> web.StreamResponse:
        return await ranks.rerank(self.context, request, ranks.COHERE)

    async def score(self, request: web.Request) -> web.StreamResponse:
        return await ranks.score(self.context, request)

    # -- auxiliary endpoints -----------------------------------------------------------

    async def models(self, request: web.Request) -> web.Response:
        return web.Response(body=self._models, content_type=JSON)

    async def health(self, request: web.Request) -> web.Response:
        states = self.deployment.states(self.context.loop.time())
        if all(s == READY for s in states):
            return web.Response(body=b'{"status":"ok"}', content_type=JSON)
        if READY in states:
            status, code = "degraded", 200
        elif COLD in states:  # scaled to zero: healthy, the next request loads it
            status, code = "cold", 200
        else:
            status, code = ("loading" if LOADING in states else "dead"), 503
        counts = {s: states.count(s) for s in (READY, COLD, LOADING, DEAD)}
        return web.json_response({"status": status, "replicas": counts}, status=code)

    async def reset_prefix_cache(self, request: web.Request) -> web.Response:
        """vLLM's POST /reset_prefix_cache: 200 with an empty body."""
        self._clear_prefix_caches()
        return web.Response(status=200)

    async def flush_cache(self, request: web.Request) -> web.Response:
        """SGLang's /flush_cache: 200 and a line of text."""
        self._clear_prefix_caches()
        return web.Response(text="Cache flushed.\n")

    def _clear_prefix_caches(self) -> None:
        for cache in self.context.prefix_caches or ():
            cache.clear()

    async def metrics_endpoint(self, request: web.Request) -> web.Response:
        ctx = self.context
        body = self.metrics.render(self.deployment, ctx.loop.time(), ctx.injector.injected)
        return web.Response(body=body, headers={"Content-Type": _PROM})


SIMULATOR_KEY = web.AppKey("loadkit_sim", Simulator)


def build_app(config: SimConfig) -> web.Application:
    """Create the simulator application for ``config``.

    The :class:`Simulator` (state and counters) is reachable as
    ``app[SIMULATOR_KEY]`` for tests and for future extensions.  Run it as
    :func:`serve` does, with ``handler_cancellation=True``: without it a
    non-streamed answer never notices that its client left
    (``disconnects.py``).
    """
    sim = Simulator(config)
    app = web.Application(client_max_size=_MAX_BODY,
                          middlewares=[middleware(config.api_key)] if config.api_key else [])
    app[SIMULATOR_KEY] = sim
    app.on_startup.append(sim.start)
    app.on_cleanup.append(sim.stop)
    app.router.add_post("/v1/chat/completions", sim.chat_completions)
    app.router.add_post("/v1/completions", sim.completions)
    app.router.add_post("/v1/responses", sim.responses)
    app.router.add_post(MESSAGES_PATH, sim.messages)
    app.router.add_post("/v1/embeddings", sim.embeddings)
    for path in ("/v1/rerank", "/rerank"):
        app.router.add_post(path, sim.rerank)
    app.router.add_post("/v2/rerank", sim.cohere_rerank)
    for path in ("/score", "/v1/score"):
        app.router.add_post(path, sim.score)
    app.router.add_get("/v1/models", sim.models)
    app.router.add_get("/health", sim.health)
    app.router.add_get("/metrics", sim.metrics_endpoint)
    app.router.add_post(RESET_PREFIX_CACHE_PATH, sim.reset_prefix_cache)
    app.router.add_route("POST", FLUSH_CACHE_PATH, sim.flush_cache)
    app.router.add_route("GET", FLUSH_CACHE_PATH, sim.flush_cache)
    add_kserve_routes(app, lambda: sim.context)  # KServe v2 (kserve_http.py)
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
