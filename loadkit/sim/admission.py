"""Admission of one inference request, and the counters of its answer.

Every inference endpoint goes through :func:`admission`: a fault-injected
429/5xx turns the request away at the door, a deployment with no live replica
answers 503, and an admitted request is counted, given a replica and its
fate, and kept in the deployment's in-system count until its handler returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from aiohttp import web

from . import openai_wire as wire
from .context import SimContext
from .dialect import ErrorShape
from .injector import HEALTHY, Fate
from .responses import rejected, unavailable
from .serving import Replica


class Admission:
    """An admitted request: its replica, its fate, and its answer's counters."""

    __slots__ = ("_ctx", "_t0", "fate", "replica")

    def __init__(self, ctx: SimContext, replica: Replica, fate: Fate, t0: float) -> None:
        self.replica = replica
        self.fate = fate
        self._ctx = ctx
        self._t0 = t0  # arrival, loop time

    def first_token(self, at: float, prompt_tokens: int) -> None:
        """The first token was out at loop time ``at``: its prompt was prefilled."""
        metrics = self._ctx.metrics
        metrics.ttft.observe(at - self._t0)
        metrics.prompt_tokens += prompt_tokens

    def answered(self, prompt_tokens: int = 0) -> None:
        """The answer is complete now; ``prompt_tokens`` for answers without tokens
        (embeddings), whose input is not counted by :meth:`first_token`."""
        metrics = self._ctx.metrics
        metrics.prompt_tokens += prompt_tokens
        metrics.finished += 1
        metrics.e2e.observe(self._ctx.loop.time() - self._t0)


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
