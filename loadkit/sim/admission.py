"""Admission of one inference request, and the counters of its answer.

Every inference endpoint goes through :func:`admission`: a fault-injected
429/5xx turns the request away at the door, a deployment with no live replica
answers 503, and an admitted request is counted, given a replica and its
fate, and kept in the deployment's in-system count until its handler returns.
:func:`arrival` is when the server sees a request: after an ``overhead``
fault held it in front of the server.

An :class:`Admission` keeps the instants of its request on the loop clock
(arrival, seated, first token, last token) and turns them into the phases
of ``/metrics`` (``metrics.py``): each instant is taken no earlier than the
one before, so the phases are never negative and add up to the end-to-end
time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

from . import openai_wire as wire
from .context import SimContext, sleep_until
from .dialect import ErrorShape
from .injector import HEALTHY, Fate
from .metrics import ns
from .responses import rejected, unavailable
from .serving import DEAD, LOADING, Replica, ReplicaLost


class Admission:
    """An admitted request: its replica, its fate, and its answer's counters."""

    __slots__ = ("_ctx", "_first", "_seated", "_t0", "fate", "replica")

    def __init__(self, ctx: SimContext, replica: Replica, fate: Fate, t0: float) -> None:
        self.replica = replica
        self.fate = fate
        self._ctx = ctx
        self._t0 = t0  # arrival, loop time
        self._seated = t0  # admitted to a batch seat (after any load), loop time
        self._first: float | None = None  # the first token's deadline, loop time

    def seated(self, at: float) -> None:
        """The request got its batch seat (KV-cache, a loaded model) at loop time ``at``."""
        self._seated = max(at, self._t0)

    def first_token(self, at: float, prompt_tokens: int) -> None:
        """The first token was due at loop time ``at``: its prompt was prefilled."""
        self._first = first = max(at, self._seated)
        metrics = self._ctx.metrics
        metrics.ttft.observe_ns(ns(self._seated - self._t0) + ns(first - self._seated))
        metrics.prompt_tokens += prompt_tokens

    def answered(self, at: float, prompt_tokens: int = 0) -> None:
        """The answer is complete: its last token was due at loop time ``at``.

        ``prompt_tokens`` for answers without tokens (embeddings), whose input
        is not counted by :meth:`first_token`; their first token is the answer
        (no decode)."""
        metrics = self._ctx.metrics
        metrics.prompt_tokens += prompt_tokens
        first = max(at, self._seated) if self._first is None else self._first
        last = max(at, first)
        metrics.answered(ns(self._seated - self._t0), ns(first - self._seated),
                         ns(last - first))


async def arrival(ctx: SimContext) -> float:
    """The loop time at which the server sees a request that reached its
    handler now: later by the active ``overhead`` faults, time spent in front
    of the server (a gateway, a proxy), which none of its metrics include."""
    loop = ctx.loop
    now = loop.time()
    if ctx.injector.delays:
        delay = ctx.injector.overhead(now)
        if delay:
            await sleep_until(loop, now + delay)
            now = loop.time()
    return now


@contextlib.contextmanager
def admission(ctx: SimContext, request: web.Request, t0: float, output_tokens: int,
              shape: ErrorShape = wire.error_shape) -> Iterator[Admission | web.Response]:
    """Yield the :class:`Admission` of a request that arrived at ``t0``, or the
    response that turns it away in the dialect's error ``shape`` (the handler
    returns that one as it is)."""
    if ctx.injector.screens:
        tenant = request.headers.get(ctx.config.tenant_header) or "anonymous"
        rejection = ctx.injector.screen(t0, tenant)
        if rejection is not None:
            yield rejected(rejection, shape)
            return
    dep = ctx.deployment
    dep.enter(t0)
    try:
        rep = dep.route()
        if rep is None:
            yield unavailable(shape)
            return
        injector = ctx.injector
        fate = injector.fate(t0, output_tokens) if injector.decides_fate else HEALTHY
        ctx.metrics.requests_total += 1
        yield Admission(ctx, rep, fate, t0)
    finally:
        dep.leave(ctx.loop.time())


async def fixed_work(ctx: SimContext, admitted: Admission, seconds: float,
                     t0: float) -> float | None:
    """`seconds` of work without a batch seat (embeddings, the KServe tensor
    model): after any model load, scaled by the request's fate and its
    replica's timeline, counted among the running sequences while it lasts.
    The loop time it was done; None when its replica died or a fault cut it."""
    loop, dep, rep, fate = ctx.loop, ctx.deployment, admitted.replica, admitted.fate
    loading = rep.state == LOADING
    try:
        await dep.until_loaded(rep)  # no batch seat: only a cold start holds it
    except ReplicaLost:
        return None
    start = loop.time() if loading else t0
    admitted.seated(start)  # a wait for a load is queue time
    work = seconds * fate.slowdown * ctx.timeline.speed_factor(rep.index, start)
    work += ctx.timeline.delay(rep.index, start)
    done = ctx.timeline.advance(rep.index, start, work)
    dep.extra_running += 1
    try:
        await sleep_until(loop, done)
    finally:
        dep.extra_running -= 1
    if fate.cut_at >= 0 or rep.state == DEAD:
        return None
    return done
