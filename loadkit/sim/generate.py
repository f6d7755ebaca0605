"""Chat and text completions through the serving model: admission, a seat on
a replica, prefill, then one token per decode step.

Each sequence runs on its own clock: token i+1 comes one decode step after
token i, the step costing ``itl_ms + itl_ms_per_seq x running`` on its
replica at that moment.  That is a fluid view of continuous batching: the
per-request speed of a lock-step batch of that size, without aligning every
sequence to one shared step boundary, which would add up to a step of jitter
to every TTFT and break the fixed-latency default.  Deadlines are absolute
loop times, so scheduler lateness on one token is not carried into the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from . import openai_wire as wire
from .injector import HEALTHY, Fate
from .serving import Replica, ReplicaLost, Ticket

if TYPE_CHECKING:
    from .server import Simulator

_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # keep reverse proxies from batching events
}
_JSON = "application/json"
# A non-streaming answer re-reads the batch size every this many tokens, so
# its cost stays a few timer wake-ups however long the answer is.
_PLAIN_CHUNK = 16

Step = Callable[[float], float]  # deadline of token i -> deadline of token i + 1


async def generate(sim: Simulator, request: web.Request, kind: str,
                   id_prefix: str) -> web.StreamResponse:
    # t0 is taken before the body is read: the simulated clock starts when
    # the request arrives, as a client-side TTFT would see it.
    loop = sim.loop
    t0 = loop.time()
    try:
        req = wire.parse_request(await request.read(), kind, sim.config.output_tokens)
        priority = sim.priority(request)
    except wire.RequestError as exc:
        return sim.bad_request(exc)
    kv = req.prompt_tokens + req.output_tokens
    if not sim.deployment.fits_at_all(kv):
        return sim.bad_request(wire.RequestError(
            f"this request needs {kv} tokens of KV-cache (prompt + max_tokens); a "
            f"replica holds {sim.config.kv_cache_tokens}", "max_tokens"),
            code="context_length_exceeded")
    refusal = sim.refuse(request, t0)
    if refusal is not None:
        return refusal
    dep = sim.deployment
    dep.enter(t0)
    try:
        rep = dep.route()
        if rep is None:
            return sim.unavailable()
        fate = (sim.injector.fate(t0, req.output_tokens) if sim.injector.decides_fate
                else HEALTHY)
        sim.metrics.requests_total += 1
        rid = f"{id_prefix}{sim.ids.getrandbits(96):024x}"
        headers = sim.version_headers(fate)
        if req.stream:
            resp = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
            await resp.prepare(request)  # headers go out now, before any wait
        ticket = await _seat(sim, request, rep, kv, priority, t0)
        if ticket is None:
            return resp if req.stream else web.Response()
        # When the simulated GPU finished this request: the next one in the
        # queue starts then, not when this loop got round to it, so the
        # simulator's own scheduling lag does not eat simulated capacity.
        finished: float | None = None
        try:
            first = _prefill_end(sim, rep, fate, req, ticket.admitted_at)
            if req.stream:
                finished = await _stream(sim, request, resp, req, fate, rep, first, t0, rid)
                return resp
            answer, finished = await _plain(sim, request, req, fate, ticket, first, t0, rid,
                                            headers)
            return answer
        finally:
            dep.release(ticket, loop.time() if finished is None else finished)
    finally:
        dep.leave(loop.time())


async def _seat(sim: Simulator, request: web.Request, rep: Replica, kv: int,
                priority: int, t0: float) -> Ticket | None:
    try:
        return await sim.deployment.acquire(rep, kv, priority, t0, lambda: cut(request))
    except ReplicaLost:
        cut(request)
        return None


def _prefill_end(sim: Simulator, rep: Replica, fate: Fate, req: wire.GenRequest,
                 start: float) -> float:
    work = (sim.ttft_s + sim.prefill_s_per_token * req.prompt_tokens) * fate.slowdown
    tl = sim.timeline
    if tl.trivial:
        return start + work
    return tl.advance(rep.index, start, work * tl.speed_factor(rep.index, start))


def _stepper(sim: Simulator, rep: Replica, fate: Fate) -> Step | None:
    """The decode-step function, or None when it is plain arithmetic."""
    tl, slow = sim.timeline, fate.slowdown
    if tl.trivial and slow == 1.0:
        return None
    base, per_seq, index = sim.itl_s, sim.itl_s_per_seq, rep.index

    def step(d: float) -> float:
        work = (base + per_seq * rep.running) * slow
        if tl.trivial:
            return d + work
        return tl.advance(index, d, work * tl.speed_factor(index, d))
    return step


async def _stream(sim: Simulator, request: web.Request, resp: web.StreamResponse,
                  req: wire.GenRequest, fate: Fate, rep: Replica, first: float,
                  t0: float, rid: str) -> float | None:
    """Send the tokens; return when the last one was due, or None if cut short."""
    loop, metrics = sim.loop, sim.metrics
    frames = wire.StreamFrames(req, rid, int(time.time()), sim.config.model)
    words = (sim.wrong_vocab if fate.wrong_content else sim.vocab).json
    n_words, n = len(words), req.output_tokens
    last, cut_at, broken_at = n - 1, fate.cut_at, fate.malformed_at
    step = _stepper(sim, rep, fate)
    base, per_seq = sim.itl_s, sim.itl_s_per_seq
    sent, d = 0, first
    try:
        for i in range(n):
            if i:
                d = d + base + per_seq * rep.running if step is None else step(d)
            await _sleep_until(loop, d)
            if i == cut_at:
                cut(request)
                return None
            if i == broken_at:
                await resp.write(frames.broken)
            else:
                head = frames.first_head if i == 0 else frames.head
                tail = frames.last_tail if i == last else frames.tail
                await resp.write(head + words[i % n_words] + tail)
            sent = i + 1
            if i == 0:
                metrics.ttft.observe(loop.time() - t0)
                metrics.prompt_tokens += req.prompt_tokens
        if cut_at == n:
            cut(request)
            return None
        if frames.usage_event is not None:
            await resp.write(frames.usage_event)
        await resp.write(wire.DONE_EVENT)
        await resp.write_eof()
        metrics.finished += 1
        metrics.e2e.observe(loop.time() - t0)
        return d
    except ConnectionResetError:
        # The client went away (or the replica died and cut it): stop
        # generating and free the seat.
        return None
    finally:
        metrics.generation_tokens += sent


async def _plain(sim: Simulator, request: web.Request, req: wire.GenRequest, fate: Fate,
                 ticket: Ticket, first: float, t0: float, rid: str,
                 headers: dict[str, str]) -> tuple[web.Response, float | None]:
    """The whole answer, and when its last token was due (None if cut)."""
    loop, rep, n = sim.loop, ticket.replica, req.output_tokens
    # A cut lands when token `cut_at` would be produced, before any byte.
    target = n - 1 if fate.cut_at < 0 else min(fate.cut_at, n - 1)
    base, per_seq = sim.itl_s, sim.itl_s_per_seq
    step = _stepper(sim, rep, fate)
    if step is None and not per_seq:  # constant steps: one sleep for the whole answer
        d = first + target * base
        await _sleep_until(loop, d)
    else:
        step = step or (lambda d: d + base + per_seq * rep.running)
        d = first
        await _sleep_until(loop, d)
        done = 0
        while done < target and ticket.state == "running":
            for _ in range(min(_PLAIN_CHUNK, target - done)):
                d = step(d)
            done = min(done + _PLAIN_CHUNK, target)
            await _sleep_until(loop, d)
    if fate.cut_at >= 0 or ticket.state != "running":  # cut, or the replica died
        cut(request)
        return web.Response(), None
    vocab = sim.wrong_vocab if fate.wrong_content else sim.vocab
    body = wire.full_response(req, rid, int(time.time()), sim.config.model, vocab.text(n))
    if fate.malformed_at >= 0:
        body = wire.broken(body)
    metrics = sim.metrics
    metrics.ttft.observe(first - t0)
    metrics.prompt_tokens += req.prompt_tokens
    metrics.generation_tokens += n
    metrics.finished += 1
    metrics.e2e.observe(loop.time() - t0)
    return web.Response(body=body, content_type=_JSON, headers=headers), d


def cut(request: web.Request) -> None:
    """Drop the client's connection mid-answer: it sees a reset, not a status."""
    transport = request.transport
    if transport is not None:
        transport.close()


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    # Still yields when the deadline has passed (delay <= 0), so a zero-delay
    # config cannot starve other streams.
    await asyncio.sleep(deadline - loop.time())
