"""Rerank and score: a query against N documents, in three servers' wire
formats, on the same serving model as generation.

Routes and how ``/rerank`` is shared (vLLM and Hugging Face TEI both serve
it): a body with ``texts`` is TEI's, any other vLLM's::

    POST /v1/rerank, /rerank   vLLM    {model, query, documents: [str | {text}], top_n?}
                                       -> {id, model, usage: {total_tokens},
                                           results: [{index, document: {text}, relevance_score}]}
    POST /v2/rerank            Cohere  {model, query, documents: [str | {text}], top_n?,
                                        return_documents?}
                                       -> {id, results: [{index, relevance_score}],
                                           meta: {api_version, billed_units, tokens}}
    POST /rerank (texts)       TEI     {query, texts: [str], return_text?}
                                       -> [{index, score, text?}]
    POST /score, /v1/score     vLLM    {model, text_1: str | [str], text_2: str | [str]}
                                       -> {id, object: list, created, model,
                                           data: [{index, object: score, score}], usage}

Rerank results are sorted by relevance, highest first (ties by index), and
cut to ``top_n`` (vLLM: 0 or absent = all); score data keep input order.
A pair's relevance is a pure function of (seed, query, document): the first
8 bytes of SHA-256 over them, as a fraction in [0, 1); the same pair scores
the same in every route (score's text_1 is the query).

The cost, so that a test knows the truth: a request of N pairs (documents,
or score's text pairs) and T tokens (the sum over its pairs of the query's
and the document's words, at least one each) takes

    rerank_ms + rerank_ms_per_doc x N + rerank_ms_per_token x T  milliseconds

of one batch seat on a replica (the seat reserves T tokens of KV-cache), so
under ``max_num_seqs`` or ``kv_cache_tokens`` it queues as chat does, and it
counts as a running sequence for the decode steps of the chats beside it.
Faults apply as to embeddings (429/5xx at the door, ``reset``, ``malformed``,
``version_b``'s slowdown and other scores, stalls, degradation, ramps);
``short_rerank`` answers one score fewer than asked (the lowest ranked, or
score's last), for a client's "wrong number of scores" check.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import openai_wire as wire
from .admission import Admission, admission, arrival
from .context import SimContext, sleep_until
from .dialect import ErrorShape, RequestError, load_object
from .responses import bad_request, cut, dropped, json_answer, version_headers
from .serving import ReplicaLost
from .vocab import text_tokens

VLLM, COHERE, TEI, SCORE = "vllm", "cohere", "tei", "score"


@dataclass(frozen=True, slots=True)
class RankRequest:
    wire: str  # VLLM, COHERE, TEI or SCORE
    query: str | None  # None for score (each pair has its own text_1)
    pairs: tuple[tuple[str, str], ...]  # (query, document) per scored document
    top_n: int  # results to return (all: len(pairs))
    return_documents: bool
    tokens: int  # T: every pair's query and document words


def cost_ms(req: RankRequest, base: float, per_doc: float, per_token: float) -> float:
    """The declared cost of a request (see the module's docstring)."""
    return base + per_doc * len(req.pairs) + per_token * req.tokens


def relevance(seed: int | str, query: str, document: str) -> float:
    """A pair's relevance score in [0, 1): deterministic in (seed, query, document)."""
    digest = hashlib.sha256(f"{seed}\0{query}\0{document}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


async def rerank(ctx: SimContext, request: web.Request, route: str) -> web.StreamResponse:
    """``route``: VLLM (``/v1/rerank``; ``/rerank`` unless the body is TEI's) or COHERE."""
    return await _serve(ctx, request, route)


async def score(ctx: SimContext, request: web.Request) -> web.StreamResponse:
    return await _serve(ctx, request, SCORE)


async def _serve(ctx: SimContext, request: web.Request, route: str) -> web.StreamResponse:
    loop, cfg, dep = ctx.loop, ctx.config, ctx.deployment
    t0 = await arrival(ctx)  # before the body is read, as generation's
    shape = _SHAPES.get(route, wire.error_shape)
    try:
        req = parse(await request.read(), route)
        shape = _SHAPES[req.wire]
    except RequestError as exc:
        return bad_request(exc, shape=_SHAPES[exc.wire] if isinstance(exc, _Refused) else shape)
    if not dep.fits_at_all(req.tokens):
        return bad_request(RequestError(
            f"this request needs {req.tokens} tokens of KV-cache (its pairs' words); a "
            f"replica holds {cfg.kv_cache_tokens}", "documents"),
            code="context_length_exceeded", shape=shape)
    with admission(ctx, request, t0, 1, shape) as admitted:
        if not isinstance(admitted, Admission):
            return admitted
        rep, fate = admitted.replica, admitted.fate
        try:
            ticket = await dep.acquire(rep, req.tokens, 0, t0, lambda: cut(request))
        except ReplicaLost:
            return dropped(request)
        finished: float | None = None
        try:
            start = ticket.admitted_at
            admitted.seated(start)
            tl = ctx.timeline
            work = cost_ms(req, cfg.rerank_ms, cfg.rerank_ms_per_doc,
                           cfg.rerank_ms_per_token) / 1000.0 * fate.slowdown
            if not tl.trivial:
                work = work * tl.speed_factor(rep.index, start) + tl.delay(rep.index, start)
            done = tl.advance(rep.index, start, work)
            # The answer is made before the wait, so its making is not in the latency.
            seed = f"{cfg.seed}:b" if fate.wrong_content else cfg.seed
            short = ctx.injector.short_scores(t0)
            body = answer(req, seed, cfg.model, f"{ctx.ids.getrandbits(96):024x}", short)
            await sleep_until(loop, done)
            finished = done
            if fate.cut_at >= 0 or ticket.state != "running":  # a reset, or the replica died
                return dropped(request)
            admitted.answered(done, prompt_tokens=req.tokens)
            ctx.metrics.scored_documents += len(req.pairs)
            return json_answer(body, fate, version_headers(fate, ctx.injector.versioned))
        finally:
            dep.release(ticket, loop.time() if finished is None else finished)


# -- requests ----------------------------------------------------------------------------


def parse(raw: bytes, route: str) -> RankRequest:
    """Validate a body for ``route`` (a ``/rerank`` body with ``texts`` is
    TEI's); raise :class:`RequestError` on client errors."""
    body = load_object(raw)
    if route == SCORE:
        return _score_request(body)
    if route == VLLM and "texts" in body and "documents" not in body:
        route = TEI
    query = body.get("query")
    if not isinstance(query, str):
        raise _error(route, "'query' must be a string", "query")
    key = "texts" if route == TEI else "documents"
    docs = _documents(body.get(key), key, route)
    top_n = body.get("top_n")
    if route == TEI or top_n is None or (route == VLLM and top_n == 0):
        top_n = len(docs)
    elif isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise _error(route, "'top_n' must be an integer >= 1", "top_n")
    flag = body.get("return_text" if route == TEI else "return_documents", route == VLLM)
    if not isinstance(flag, bool):
        raise _error(route, "'return_documents' must be a boolean", "return_documents")
    pairs = tuple((query, d) for d in docs)
    return RankRequest(route, query, pairs, min(top_n, len(docs)), flag, _tokens(pairs))


def _score_request(body: dict[str, Any]) -> RankRequest:
    first, second = body.get("text_1"), body.get("text_2")
    if first is None or second is None:
        raise RequestError("'text_1' and 'text_2' are required", "text_1")
    left = _texts(first, "text_1")
    right = _texts(second, "text_2")
    if len(left) == 1:
        left = left * len(right)
    if len(left) != len(right):
        raise RequestError("'text_1' must be one text or as many as 'text_2'", "text_1")
    pairs = tuple(zip(left, right))
    return RankRequest(SCORE, None, pairs, len(pairs), False, _tokens(pairs))


def _texts(value: Any, param: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, str) for t in value):
        return value
    raise RequestError(f"'{param}' must be a string or a non-empty array of strings", param)


def _documents(value: Any, key: str, route: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise _error(route, f"'{key}' must be a non-empty array", key)
    docs = []
    for d in value:
        if isinstance(d, dict) and route != TEI:
            d = d.get("text")
        if not isinstance(d, str):
            raise _error(route, f"each of '{key}' must be a string"
                         + ("" if route == TEI else " or an object with a string 'text'"), key)
        docs.append(d)
    return docs


def _tokens(pairs: tuple[tuple[str, str], ...]) -> int:
    return sum(text_tokens(q) + text_tokens(d) for q, d in pairs)


class _Refused(RequestError):
    """A client error in a known wire's shape."""

    def __init__(self, wire: str, message: str, param: str) -> None:
        # TEI answers a validation error 422 (axum's), the others 400.
        super().__init__(message, param, status=422 if wire == TEI else 400)
        self.wire = wire


def _error(route: str, message: str, param: str) -> RequestError:
    return _Refused(route, message, param)


# -- answers -----------------------------------------------------------------------------


def answer(req: RankRequest, seed: int | str, model: str, hexid: str, short: bool) -> bytes:
    """The response body; ``short``: one result fewer (the short_rerank fault)."""
    scores = [relevance(seed, q, d) for q, d in req.pairs]
    if req.wire == SCORE:
        data = [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)]
        if short:
            data.pop()
        return _dumps({"id": f"score-{hexid}", "object": "list", "created": int(time.time()),
                       "model": model, "data": data,
                       "usage": {"prompt_tokens": req.tokens, "total_tokens": req.tokens,
                                 "completion_tokens": 0}})
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:req.top_n]
    if short:
        order.pop()
    docs = [d for _, d in req.pairs]
    if req.wire == TEI:
        return _dumps([{"index": i, "score": scores[i],
                        **({"text": docs[i]} if req.return_documents else {})}
                       for i in order])
    if req.wire == COHERE:
        results = [{"index": i, "relevance_score": scores[i],
                    **({"document": {"text": docs[i]}} if req.return_documents else {})}
                   for i in order]
        return _dumps({"id": f"{hexid[:8]}-{hexid[8:12]}-{hexid[12:16]}-{hexid[16:20]}-"
                             f"{hexid[20:]}",
                       "results": results,
                       "meta": {"api_version": {"version": "2"},
                                "billed_units": {"search_units":
                                                 math.ceil(len(req.pairs) / 100)},
                                "tokens": {"input_tokens": req.tokens}}})
    results = [{"index": i, "document": {"text": docs[i]}, "relevance_score": scores[i]}
               for i in order]
    return _dumps({"id": f"rerank-{hexid}", "model": model,
                   "usage": {"total_tokens": req.tokens}, "results": results})


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _cohere_error(status: int, message: str, err_type: str, param: str | None,
                  code: str | None) -> bytes:
    return json.dumps({"message": message}).encode()


def _tei_error(status: int, message: str, err_type: str, param: str | None,
               code: str | None) -> bytes:
    kind = {422: "Validation", 413: "Validation", 429: "Overloaded"}.get(
        status, "Backend" if status >= 500 else "Validation")
    return json.dumps({"error": message, "error_type": kind}).encode()


_SHAPES: dict[str, ErrorShape] = {VLLM: wire.error_shape, SCORE: wire.error_shape,
                                  COHERE: _cohere_error, TEI: _tei_error}
