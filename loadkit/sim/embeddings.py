"""OpenAI embeddings wire format and deterministic vectors.

``POST /v1/embeddings`` takes ``input`` as a string, a list of strings, a
list of token ids or a list of such lists, plus the optional
``encoding_format`` (``float`` or ``base64``: little-endian float32, what
openai-python asks for by default) and ``dimensions``.  Each vector is a pure
function of (seed, input): unit length, drawn from a SHAKE-256 stream, so the
same text always gets the same vector and different texts different ones.
An answer takes ``embedding_ms + embedding_ms_per_token x input tokens`` of
the replica's time, without a batch seat: only a cold start makes it wait.
On ``/metrics`` its answer counts like a one-token one: queue (a load),
prefill, no decode; no TTFT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from array import array
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .admission import Admission, admission, arrival, fixed_work
from .context import SimContext
from .openai_wire import RequestError, approx_tokens
from .responses import bad_request, dropped, json_answer, version_headers

_MAX_INPUTS = 2048  # OpenAI's limit on inputs per request


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    keys: tuple[str, ...]  # one canonical text per input, the vector's seed
    tokens: int  # input tokens, for usage and timing
    encoding: str
    dimensions: int


async def embeddings(ctx: SimContext, request: web.Request) -> web.StreamResponse:
    cfg = ctx.config
    t0 = await arrival(ctx)
    try:
        req = parse_embedding_request(await request.read(), cfg.embedding_dim)
    except RequestError as exc:
        return bad_request(exc)
    with admission(ctx, request, t0, 1) as admitted:
        if not isinstance(admitted, Admission):
            return admitted
        fate = admitted.fate
        done = await fixed_work(
            ctx, admitted, (cfg.embedding_ms + cfg.embedding_ms_per_token * req.tokens) / 1000.0,
            t0)
        if done is None:
            return dropped(request)
        seed = f"{cfg.seed}:b" if fate.wrong_content else str(cfg.seed)
        body = embedding_response(req, seed, cfg.model)
        admitted.answered(done, prompt_tokens=req.tokens)  # prefill only, no decode
        return json_answer(body, fate, version_headers(fate, ctx.injector.versioned))


def parse_embedding_request(raw: bytes, max_dim: int) -> EmbeddingRequest:
    """Validate a request body; raise RequestError (HTTP 400) on client errors."""
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    if "input" not in body:
        raise RequestError("missing required parameter: 'input'", "input")
    keys, tokens = _inputs(body["input"])
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise RequestError("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    dims = body.get("dimensions")
    if dims is None:
        dims = max_dim
    elif isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= max_dim:
        raise RequestError(f"'dimensions' must be an integer in 1..{max_dim}", "dimensions")
    return EmbeddingRequest(keys, tokens, encoding, dims)


def vector(seed: int | str, key: str, dims: int) -> list[float]:
    """The unit vector of one input: deterministic in (seed, key, dims)."""
    raw = hashlib.shake_256(f"{seed}\0{key}".encode()).digest(2 * dims)
    values = array("H", raw)  # uniform 16-bit integers -> [-1, 1)
    floats = [v / 32768.0 - 1.0 for v in values]
    norm = math.sqrt(sum(x * x for x in floats)) or 1.0
    return [x / norm for x in floats]


def embedding_response(req: EmbeddingRequest, seed: int | str, model: str) -> bytes:
    """The response body: one vector per input, in input order."""
    data = []
    for i, key in enumerate(req.keys):
        vec = vector(seed, key, req.dimensions)
        emb: Any = (base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
                    if req.encoding == "base64" else vec)
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return json.dumps({"object": "list", "data": data, "model": model,
                       "usage": {"prompt_tokens": req.tokens,
                                 "total_tokens": req.tokens}}).encode()


def _inputs(value: Any) -> tuple[tuple[str, ...], int]:
    """(canonical keys, token count) of an `input` value."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, list) and value and all(isinstance(t, int) and not isinstance(t, bool)
                                                   for t in value):
        value = [value]  # one pre-tokenised input
    if not isinstance(value, list) or not value:
        raise RequestError("'input' must be a string, an array of strings, or an "
                           "array of token ids", "input")
    if len(value) > _MAX_INPUTS:
        raise RequestError(f"'input' may hold at most {_MAX_INPUTS} items", "input")
    keys, tokens = [], 0
    for item in value:
        if isinstance(item, str) and item:
            keys.append(item)
            tokens += approx_tokens(len(item))
        elif (isinstance(item, list) and item
              and all(isinstance(t, int) and not isinstance(t, bool) for t in item)):
            keys.append("\0ids:" + ",".join(map(str, item)))
            tokens += len(item)
        else:
            raise RequestError("each input must be a non-empty string or a non-empty "
                               "array of token ids", "input")
    return tuple(keys), tokens
