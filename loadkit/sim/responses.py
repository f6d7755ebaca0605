"""HTTP answers shared by the inference handlers: errors in the dialect's
shape (OpenAI's unless said), a cut connection, and the JSON answer of a
request that ran its course; and whether a connection that closed was closed
by its client (:func:`hung_up`) or by the server (:func:`cut`)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import openai_wire as wire
from .dialect import ErrorShape, RequestError
from .injector import Fate, Rejection

JSON = "application/json"
# Marks a request whose connection the server closed itself (a fault, a dead
# replica): that close is no hang-up.  A RequestKey where aiohttp has one
# (3.13+: it warns about plain keys), else a plain key.
_CUT: Any = (web.RequestKey("cut", bool) if hasattr(web, "RequestKey")
             else "loadkit_sim.cut")


def bad_request(exc: RequestError, code: str | None = None,
                shape: ErrorShape = wire.error_shape) -> web.Response:
    """A client error: 400 unless the error says another status."""
    return web.Response(status=exc.status, content_type=JSON,
                        body=shape(exc.status, str(exc), exc.err_type, exc.param,
                                   code or exc.code))


def unavailable(shape: ErrorShape = wire.error_shape) -> web.Response:
    return web.Response(status=503, content_type=JSON, body=shape(
        503, "no replica is alive to serve this request", "server_error", None, None))


def rejected(rej: Rejection, shape: ErrorShape = wire.error_shape) -> web.Response:
    """The fault-injected 429 or 5xx given instead of inference."""
    headers = {} if rej.retry_after is None else {"Retry-After": str(rej.retry_after)}
    return web.Response(status=rej.status, content_type=JSON, headers=headers,
                        body=shape(rej.status, rej.message, rej.err_type, None, rej.code))


def cut(request: web.Request) -> None:
    """Drop the client's connection mid-answer: it sees a reset, not a status."""
    request[_CUT] = True
    transport = request.transport
    if transport is not None:
        transport.close()


def hung_up(request: web.Request) -> bool:
    """Whether the client closed the connection: it is closed or closing, and
    not by :func:`cut` (a shutdown cancels handlers with it still open)."""
    transport = request.transport
    return (transport is None or transport.is_closing()) and not request.get(_CUT, False)


def dropped(request: web.Request,
            prepared: web.StreamResponse | None = None) -> web.StreamResponse:
    """Cut the connection; return what the handler hands back to aiohttp (the
    stream already under way, or an empty response that is never sent)."""
    cut(request)
    return web.Response() if prepared is None else prepared


def version_headers(fate: Fate, versioned: bool) -> dict[str, str]:
    """Which version answered, once a version_b fault is configured."""
    return {"X-Loadkit-Sim-Version": fate.version} if versioned else {}


def json_answer(body: bytes, fate: Fate, headers: dict[str, str]) -> web.Response:
    """A complete JSON answer; cut in half when its fate is a malformed chunk."""
    if fate.malformed_at >= 0:
        body = wire.broken(body)
    return web.Response(body=body, content_type=JSON, headers=headers)
