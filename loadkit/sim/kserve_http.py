"""KServe v2 over HTTP: health, model readiness and metadata, Triton's
repository index, ``/infer`` on the tensor model, and Triton's ``generate``
/ ``generate_stream`` extension on the LLM.

Generation is a dialect of ``generate.py`` (as chat or Messages are): the
same admission, seats, prefill and decode steps, streamed as SSE events of
``{"model_name", "model_version", "text_output"}``, with no ``[DONE]``: the
stream ends with the response, as Triton's does.  Errors are KServe's
``{"error": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from . import kserve_models as km
from .admission import Admission, admission, arrival
from .context import SimContext
from .dialect import Answer, Dialect, GenRequest, RequestError, load_object
from .generate import generate
from .openai_wire import TEXT
from .responses import JSON, dropped, json_answer, version_headers
from .vocab import text_tokens

V2 = "/v2"


def error_body(status: int, message: str, err_type: str, param: str | None,
               code: str | None) -> bytes:
    return json.dumps({"error": message}).encode()


def _error(exc: km.KServeError) -> web.Response:
    return web.Response(status=exc.status, content_type=JSON,
                        body=error_body(exc.status, str(exc), "", None, None))


def parse_generate(raw: bytes, default_tokens: int, stream: bool) -> GenRequest:
    """Triton's generate body: ``text_input`` and parameters at the top level
    (``max_tokens``), or under ``parameters`` as KServe's generate API puts them."""
    body = load_object(raw)
    given = body.get("parameters")
    params: dict[str, Any] = given if isinstance(given, dict) else {}
    text = body.get("text_input")
    if not isinstance(text, str):
        raise RequestError("'text_input' must be a string", "text_input")
    n = body.get("max_tokens", params.get("max_tokens", default_tokens))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RequestError("'max_tokens' must be an integer >= 1", "max_tokens")
    return GenRequest(TEXT, n, text_tokens(text), stream, False, prompt_text=text)


class Frames:
    """SSE events of a generate_stream answer: ``head + <json text> + tail``."""

    start = role_event = cut_stream = done = b""
    ping = b": ping\n\n"

    def __init__(self, model: str) -> None:
        self.head = (b'data: {"model_name":' + json.dumps(model).encode()
                     + b',"model_version":"1","text_output":')
        self.broken = self.head + b'"bro'

    def content(self, first: bool, last: bool, text: bytes, sent: int, prompt: int,
                reasoning: bool = False) -> bytes:
        return self.head + text + b"}\n\n"

    def error(self) -> bytes:
        return b'data: {"error":"the model failed mid-stream"}\n\n'

    def end(self, usage: bool) -> bytes:
        return b""


def full_response(req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                  cached: int | None = None) -> bytes:
    return json.dumps({"model_name": model, "model_version": "1",
                       "text_output": answer.text()}).encode()


def _dialect(stream: bool) -> Dialect:
    def parse(raw: bytes, default: int, headers: Mapping[str, str]) -> GenRequest:
        return parse_generate(raw, default, stream)

    return Dialect("kserve", "kserve-", parse,
                   lambda req, answer, rid, created, model, cached: Frames(model),
                   full_response, error_body)


STREAM, PLAIN = _dialect(True), _dialect(False)


class KServeHttp:
    """The handlers, bound to the running server's context by ``context()``."""

    def __init__(self, context: Any) -> None:
        self.context = context  # () -> SimContext: set once the server starts

    async def server_live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def server_ready(self, request: web.Request) -> web.Response:
        ok = km.ready(self.context())
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    async def server_metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"name": "loadkit-sim", "version": "1",
                                  "extensions": ["generate", "model_repository"]})

    async def model_ready(self, request: web.Request) -> web.Response:
        ctx = self.context()
        try:
            km.kind_of(ctx, request.match_info["model"], request.match_info.get("version", ""))
        except km.KServeError as exc:
            return _error(exc)
        ok = km.ready(ctx)
        return web.json_response({"name": request.match_info["model"], "ready": ok},
                                 status=200 if ok else 400)

    async def model_metadata(self, request: web.Request) -> web.Response:
        try:
            return web.json_response(km.metadata(self.context(), request.match_info["model"]))
        except km.KServeError as exc:
            return _error(exc)

    async def repository_index(self, request: web.Request) -> web.Response:
        return web.json_response(km.index(self.context()))

    async def generate(self, request: web.Request) -> web.StreamResponse:
        ctx = self.context()
        try:
            if km.kind_of(ctx, request.match_info["model"],
                          request.match_info.get("version", "")) != "llm":
                raise km.KServeError("the tensor model does not generate: use /infer")
        except km.KServeError as exc:
            return _error(exc)
        stream = request.path.endswith("_stream")
        return await generate(ctx, request, STREAM if stream else PLAIN)

    async def infer(self, request: web.Request) -> web.StreamResponse:
        ctx = self.context()
        t0 = await arrival(ctx)
        try:
            kind = km.kind_of(ctx, request.match_info["model"],
                              request.match_info.get("version", ""))
            if kind != "tensor":
                raise km.KServeError("the LLM is decoupled: use generate or generate_stream")
            inputs, nbytes = _inputs(await request.read())
            km.check_tensor_inputs(inputs)
        except km.KServeError as exc:
            return _error(exc)
        with admission(ctx, request, t0, 1, error_body) as admitted:
            if not isinstance(admitted, Admission):
                return admitted
            done = await km.tensor_work(ctx, admitted, nbytes, t0)
            if done is None:
                return dropped(request)
            body = json.dumps({"model_name": request.match_info["model"], "model_version": "1",
                               "outputs": [{"name": "OUTPUT0", "datatype": "FP32",
                                            "shape": [1], "data": [float(nbytes)]}]}).encode()
            fate = admitted.fate
            return json_answer(body, fate, version_headers(fate, ctx.injector.versioned))


def _inputs(raw: bytes) -> tuple[list[tuple[str, str, list[int]]], int]:
    """(name, datatype, shape) of each input, and their bytes as raw tensors."""
    try:
        body = load_object(raw)
    except RequestError as exc:
        raise km.KServeError(str(exc)) from None
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise km.KServeError("'inputs' must be a non-empty list")
    out, nbytes = [], 0
    for t in inputs:
        if not (isinstance(t, dict) and isinstance(t.get("name"), str)
                and isinstance(t.get("datatype"), str) and isinstance(t.get("shape"), list)
                and isinstance(t.get("data"), list)):
            raise km.KServeError("each input needs name, datatype, shape and data")
        shape = t["shape"]
        elements = 1
        for d in shape:
            elements *= d if isinstance(d, int) else 0
        data = t["data"]
        count = _count(data)
        if count != elements:
            raise km.KServeError(f"input {t['name']}: {count} values for shape {shape}")
        if t["datatype"] == "BYTES":
            nbytes += sum(len(str(v).encode()) + 4 for v in _flat(data))
        else:
            nbytes += elements * km.SIZES.get(t["datatype"], 4)
        out.append((t["name"], t["datatype"], shape))
    return out, nbytes


def _flat(data: list) -> list:
    return [x for v in data for x in (_flat(v) if isinstance(v, list) else [v])]


def _count(data: list) -> int:
    return sum(_count(v) if isinstance(v, list) else 1 for v in data)


def add_routes(app: web.Application, context: Any) -> None:
    """The KServe v2 routes; ``context()`` gives the running SimContext."""
    h = KServeHttp(context)
    r = app.router
    r.add_get(V2, h.server_metadata)
    r.add_get(V2 + "/health/live", h.server_live)
    r.add_get(V2 + "/health/ready", h.server_ready)
    r.add_post(V2 + "/repository/index", h.repository_index)
    for base in (V2 + "/models/{model}", V2 + "/models/{model}/versions/{version}"):
        r.add_get(base, h.model_metadata)
        r.add_get(base + "/ready", h.model_ready)
        r.add_post(base + "/infer", h.infer)
        r.add_post(base + "/generate", h.generate)
        r.add_post(base + "/generate_stream", h.generate)


__all__ = ["SimContext", "add_routes"]
