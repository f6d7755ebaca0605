"""Generation through the serving model, for every dialect (chat and text
completions, Responses, Anthropic Messages): admission, a seat on a replica,
prefill, then one token per decode step (streamed one event per
`stream_interval` tokens, as vLLM's --stream-interval).  What the tokens say
and how they are framed is the dialect's (``dialect.py``); the timing is
this one loop's.

Each sequence runs on its own clock: token i+1 comes one decode step after
token i, the step costing ``itl_ms + itl_ms_per_seq x running`` on its
replica at that moment.  That is a fluid view of continuous batching: the
per-request speed of a lock-step batch of that size, without aligning every
sequence to one shared step boundary, which would add up to a step of jitter
to every TTFT and break the fixed-latency default.  Deadlines are absolute
loop times, so scheduler lateness on one token is not carried into the next.

The request's phases on ``/metrics`` (``metrics.py``) are taken from the same
deadlines: arrival, seated (``Ticket.admitted_at``), the first token's
deadline and the last token's, so queue + prefill + decode is the end-to-end
time exactly, streamed or not; what the loop adds when writing the events
(and the closing frames after the last token) is in none of them.

A client that hangs up (``disconnects.py``) stops its request where it is,
seat and KV-cache freed, and is noted; a request that arrives during an
``ignore_disconnect`` fault runs its generation as a task of its own, which
a hang-up leaves running to its last token (a zombie), writing nothing.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from . import openai_wire as wire
from .admission import Admission, admission, arrival
from .answer import plan
from .config import SimConfig
from .context import SimContext, sleep_until
from .dialect import Answer, Dialect, GenRequest, RequestError
from .disconnects import Track, forget
from .injector import Fate
from .media import priced
from .responses import bad_request, cut, dropped, hung_up, json_answer, version_headers
from .responses_wire import not_found
from .serving import Replica, ReplicaLost, Ticket

_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # keep reverse proxies from batching events
}
# A non-streaming answer re-reads the batch size every this many tokens, so
# its cost stays a few timer wake-ups however long the answer is.
_PLAIN_CHUNK = 16

Step = Callable[[float], float]  # deadline of token i -> deadline of token i + 1


async def generate(ctx: SimContext, request: web.Request,
                   dialect: Dialect) -> web.StreamResponse:
    """Answer one inference request; a client that hangs up is noted
    (``disconnects.py``) as the server notices it."""
    # t0 is taken before the body is read: the simulated clock starts when
    # the request arrives, as a client-side TTFT would see it (after an
    # `overhead` fault's time in front of the server, which it never sees).
    loop, dep = ctx.loop, ctx.deployment
    track = Track(ctx.metrics, ctx.injector, ctx.disconnects, dialect.name, loop.time())
    try:
        t0 = track.arrival = await arrival(ctx)
        shape = dialect.error_body
        try:
            req = dialect.parse(await request.read(), ctx.config.output_tokens,
                                request.headers)
            priority = _priority(ctx.config, request)
            req = _shaped(ctx, req)
            if req.media:  # images and audio: decoded, priced, logged (media.py)
                req = priced(ctx, req, dialect.name, t0)
        except RequestError as exc:
            return bad_request(exc, shape=shape)
        track.stream = req.stream
        kind = ctx.draws.kind(req)
        kv = req.prompt_tokens + req.generated
        if not dep.fits_at_all(kv):
            return bad_request(RequestError(
                f"this request needs {kv} tokens of KV-cache (prompt + max_tokens); a "
                f"replica holds {ctx.config.kv_cache_tokens}", "max_tokens"),
                code="context_length_exceeded", shape=shape)
        serving = _serve(ctx, request, dialect, req, kind, kv, priority, t0, track)
        if not ctx.injector.may_ignore_disconnect(t0):
            return await serving
        return await _detached(ctx, request, serving, track)
    except asyncio.CancelledError:  # the client hung up, or the server stops
        if hung_up(request):
            track.leave(loop.time())
        raise


async def _detached(ctx: SimContext, request: web.Request,
                    serving: Coroutine[Any, Any, web.StreamResponse],
                    track: Track) -> web.StreamResponse:
    """Serve a request that may ignore its client's hang-up (ignore_disconnect)
    as a task of its own, so that cancelling the handler leaves it be."""
    track.zombie = None  # known once it has a replica
    task = ctx.loop.create_task(serving)
    ctx.detached.add(task)
    task.add_done_callback(functools.partial(forget, ctx.detached, track))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if hung_up(request):
            track.leave(ctx.loop.time())
            if track.zombie is not False:  # a zombie runs on (undecided: it decides)
                raise
        task.cancel()
        raise


async def _serve(ctx: SimContext, request: web.Request, dialect: Dialect, req: GenRequest,
                 kind: str, kv: int, priority: int, t0: float,
                 track: Track) -> web.StreamResponse:
    """Admission, a seat, the prefill and the tokens of a parsed request."""
    loop, dep = ctx.loop, ctx.deployment
    with admission(ctx, request, t0, req.generated, dialect.error_body) as admitted:
        if not isinstance(admitted, Admission):  # turned away: no generation to run on
            if track.zombie is None:
                track.admitted(None, False)
            return admitted
        rep, fate = admitted.replica, admitted.fate
        if track.zombie is None:  # the replica decides: ignore_disconnect may name one
            track.admitted(rep.index, ctx.injector.ignores_disconnect(t0, rep.index))
            if track.gone and not track.zombie:  # left before it had a replica
                return web.Response()  # never sent
        else:
            track.admitted(rep.index, None)
        rid = f"{dialect.id_prefix}{ctx.ids.getrandbits(96):024x}"
        if req.store:
            ctx.responses.put(rid, req.prompt_tokens + req.generated)
        answer = plan(req, kind, ctx.wrong_vocab if fate.wrong_content else ctx.vocab,
                      ctx.draws)
        headers = version_headers(fate, ctx.injector.versioned)
        resp = None
        if req.stream:
            resp = web.StreamResponse(headers={**_SSE_HEADERS, **headers})
            try:
                await resp.prepare(request)  # headers go out now, before any wait
            except ConnectionResetError:
                if not hung_up(request):
                    raise
                track.leave(loop.time())
                if not track.zombie:
                    return resp
        try:
            ticket = await dep.acquire(rep, kv, priority, t0, lambda: cut(request))
        except ReplicaLost:
            return dropped(request, resp)
        admitted.seated(ticket.admitted_at)
        # When the simulated GPU finished this request: the next one in the
        # queue starts then, not when this loop got round to it, so the
        # simulator's own scheduling lag does not eat simulated capacity.
        finished: float | None = None
        try:
            cached = None
            if ctx.prefix_caches is not None:  # looked up when the prefill starts
                text = req.prompt_tokens - req.media_tokens  # media are never cached
                cached = ctx.prefix_caches[rep.index].admit(req.prompt_text, text)
                ctx.metrics.prefix_queries += text
                ctx.metrics.prefix_hits += cached
            first = _prefill_end(ctx, rep, fate, req, ticket.admitted_at, cached or 0)
            if resp is not None:
                finished = await _stream(ctx, admitted, request, resp, dialect, req, answer,
                                         first, rid, cached, ticket, track)
                return resp
            body, finished = await _plain(ctx, admitted, request, dialect, req, answer,
                                          ticket, first, rid, headers, cached, track)
            return body
        finally:
            end = loop.time() if finished is None else finished
            dep.release(ticket, end)
            if track.zombie:
                track.finish(end)


def _shaped(ctx: SimContext, req: GenRequest) -> GenRequest:
    """The request with its earlier context (``previous_response_id``) in its
    prompt and its reasoning drawn: max tokens bound reasoning and answer
    together, as OpenAI's, vLLM's and Anthropic's do."""
    if req.previous_response_id is not None:
        earlier = ctx.responses.get(req.previous_response_id)
        if earlier is None:
            raise not_found(req.previous_response_id)
        req = dataclasses.replace(req, prompt_tokens=req.prompt_tokens + earlier)
    if req.kind != wire.TEXT:
        thinking = ctx.draws.reasoning(req.output_tokens)
        if thinking:
            req = dataclasses.replace(req, reasoning_tokens=thinking,
                                      output_tokens=req.output_tokens - thinking)
    return req


def _priority(config: SimConfig, request: web.Request) -> int:
    """The request's queue priority (lower first); 0 under FCFS."""
    if config.queue_policy != "priority":
        return 0
    raw = request.headers.get(config.priority_header)
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise wire.RequestError(f"header {config.priority_header} must be an "
                                f"integer, got {raw[:40]!r}") from None


def _prefill_end(ctx: SimContext, rep: Replica, fate: Fate, req: GenRequest,
                 start: float, cached: int = 0) -> float:
    """Cached prompt tokens (the prefix cache) need no prefill."""
    work = (ctx.ttft_s + ctx.prefill_s_per_token * (req.prompt_tokens - cached)) * fate.slowdown
    tl = ctx.timeline
    if tl.trivial:
        return start + work
    return tl.advance(rep.index, start,
                      work * tl.speed_factor(rep.index, start) + tl.delay(rep.index, start))


def _stepper(ctx: SimContext, rep: Replica, fate: Fate) -> Step | None:
    """The decode-step function, or None when it is plain arithmetic."""
    tl, slow = ctx.timeline, fate.slowdown
    if tl.trivial and slow == 1.0:
        return None
    base, per_seq, index = ctx.itl_s, ctx.itl_s_per_seq, rep.index

    def step(d: float) -> float:
        work = (base + per_seq * rep.running) * slow
        if tl.trivial:
            return d + work
        return tl.advance(index, d, work * tl.speed_factor(index, d))
    return step


async def _stream(ctx: SimContext, admitted: Admission, request: web.Request,
                  resp: web.StreamResponse, dialect: Dialect, req: GenRequest, answer: Answer,
                  first: float, rid: str, cached: int | None, ticket: Ticket,
                  track: Track) -> float | None:
    """Send the tokens; return when the last one was due, or None if cut short."""
    loop, rep, fate = ctx.loop, admitted.replica, admitted.fate
    quirks = fate.quirks
    frames = dialect.frames(req, answer, rid, int(time.time()), ctx.config.model, cached)
    chunk = answer.chunk
    n, thinking = req.generated, req.reasoning_tokens
    last, cut_at, broken_at = n - 1, fate.cut_at, fate.malformed_at
    error_at = quirks.error_in_stream
    every = quirks.merge_tokens or ctx.config.stream_interval  # tokens per event after the first
    lead = 1 if quirks.merge_first else 0  # 1: the first event waits for its `every` tokens too
    ping = frames.ping if quirks.ping_comments else b""
    step = _stepper(ctx, rep, fate)
    base, per_seq = ctx.itl_s, ctx.itl_s_per_seq
    # A zombie (ignore_disconnect) writes nothing once its client is gone, and
    # keeps its tokens' deadlines to count those after the hang-up.
    deadlines: list[float] | None = None
    out: web.StreamResponse | _Gate = resp
    if track.zombie:
        deadlines, out = [], _Gate(resp, request, track, loop)
    sent, d = 0, first  # sent: tokens out of the loop (a zombie's: written or not)
    try:
        if frames.start:  # a dialect's opening events (Responses, Messages): no token
            await out.write(frames.start)
        if quirks.role_event and frames.role_event:  # at once, before the prefill
            await out.write(ping + frames.role_event)
        if quirks.cut_stream:  # what an engine sends when it drops a waiting stream
            await sleep_until(loop, d)
            if frames.cut_stream:
                await out.write(ping + frames.cut_stream)
            await out.write_eof()
            return None
        for i in range(n):
            if i:
                d = d + base + per_seq * rep.running if step is None else step(d)
            if deadlines is not None:
                deadlines.append(d)
            # Token i is decoded at d; it goes out with the tokens since the last
            # event when the interval is full (the first token goes alone, as
            # vLLM sends it, unless merge_tokens' `first`). An event never
            # mixes reasoning and answer: the last reasoning token closes one.
            if (i + lead) % every and i not in (last, cut_at, broken_at, error_at,
                                                thinking - 1):
                continue
            await sleep_until(loop, d)
            if deadlines is not None and ticket.state != "running":
                return None  # a zombie's replica died (its connection was cut)
            if i == cut_at:
                cut(request)
                return None
            if i == error_at:
                await out.write(ping + frames.error() + frames.done)
                await out.write_eof()
                return None
            if i == broken_at:
                await out.write(frames.broken)
            else:
                await out.write(ping + frames.content(sent == 0, i == last, chunk(sent, i + 1),
                                                  i + 1, req.prompt_tokens, i < thinking))
            opening = sent == 0
            track.sent = sent = i + 1
            if opening:  # at the model's time, not the loop's, as a plain answer's
                admitted.first_token(first, req.prompt_tokens)
        if cut_at == n:
            cut(request)
            return None
        end = frames.end(not quirks.no_stream_usage)
        if end:
            await out.write(ping + end)
        if frames.done and not quirks.no_done:
            await out.write(frames.done)
        await out.write_eof()
        admitted.answered(d)  # the last token's deadline, as the first token's
        return d
    except ConnectionResetError:
        # The client went away (or the replica died and cut it): stop
        # generating and free the seat.
        if hung_up(request):
            track.leave(loop.time())
        return None
    finally:
        ctx.metrics.generation_tokens += sent
        if deadlines is not None and track.record is not None:
            track.after = _after(deadlines[:sent], track.record.noticed)


class _Gate:
    """A zombie's writes: none once its client is gone; a write that finds
    the connection closed by the client is the server's notice."""

    __slots__ = ("_loop", "_request", "_resp", "_track")

    def __init__(self, resp: web.StreamResponse, request: web.Request, track: Track,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._resp, self._request, self._track, self._loop = resp, request, track, loop

    async def write(self, data: bytes) -> None:
        if not self._track.gone:
            try:
                await self._resp.write(data)
            except ConnectionResetError:
                self._left()

    async def write_eof(self) -> None:
        if not self._track.gone:
            try:
                await self._resp.write_eof()
            except ConnectionResetError:
                self._left()

    def _left(self) -> None:
        if not hung_up(self._request):  # the server cut it: the stream ends
            raise ConnectionResetError("the server closed the connection")
        self._track.leave(self._loop.time())


def _after(deadlines: list[float], noticed: float) -> int:
    """How many of these tokens were due after the hang-up was noticed."""
    return len(deadlines) - bisect.bisect_right(deadlines, noticed)


async def _plain(ctx: SimContext, admitted: Admission, request: web.Request, dialect: Dialect,
                 req: GenRequest, answer: Answer, ticket: Ticket, first: float, rid: str,
                 headers: dict[str, str], cached: int | None, track: Track
                 ) -> tuple[web.StreamResponse, float | None]:
    """The whole answer, and when its last token was due (None if cut).

    A hang-up cancels the sleep it is in (aiohttp's handler_cancellation), be
    it one sleep for the whole answer or one per 16 decode steps, so the
    server notices it at once, not at the end of the sleep."""
    loop, rep, fate, n = ctx.loop, ticket.replica, admitted.fate, req.generated
    # A cut lands when token `cut_at` would be produced, before any byte.
    target = n - 1 if fate.cut_at < 0 else min(fate.cut_at, n - 1)
    base, per_seq = ctx.itl_s, ctx.itl_s_per_seq
    step = _stepper(ctx, rep, fate)
    # A zombie keeps its tokens' deadlines, to count those after a hang-up.
    deadlines: list[float] | None = [first] if track.zombie else None
    if step is None and not per_seq and deadlines is None:  # one sleep for the whole answer
        d = first + target * base
        await sleep_until(loop, d)
    else:
        step = step or (lambda d: d + base + per_seq * rep.running)
        d = first
        await sleep_until(loop, d)
        done = 0
        while done < target and ticket.state == "running":
            for _ in range(min(_PLAIN_CHUNK, target - done)):
                d = step(d)
                if deadlines is not None:
                    deadlines.append(d)
            done = min(done + _PLAIN_CHUNK, target)
            await sleep_until(loop, d)
    cut_short = fate.cut_at >= 0 or ticket.state != "running"  # cut, or the replica died
    if deadlines is not None and track.record is not None:
        # Cut: token `target` is never produced; a dead replica's: those due by now.
        made = (deadlines[:target] if fate.cut_at >= 0 else
                [x for x in deadlines if x <= loop.time()] if cut_short else deadlines)
        track.after = _after(made, track.record.noticed)
    if cut_short:
        return dropped(request), None
    body = dialect.full_response(req, answer, rid, int(time.time()), ctx.config.model, cached)
    admitted.first_token(first, req.prompt_tokens)  # the model's time, not the loop's
    ctx.metrics.generation_tokens += n
    admitted.answered(d)
    return json_answer(body, fate, headers), d
