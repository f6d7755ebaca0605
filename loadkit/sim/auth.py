"""The ``api_key`` knob: every ``/v1`` endpoint wants the key, and so do the
prefix cache resets (``/reset_prefix_cache``, ``/flush_cache``: a Bearer).

OpenAI's endpoints take ``Authorization: Bearer <key>``; Anthropic's
``/v1/messages`` takes ``x-api-key: <key>`` (or the Bearer, as gateways send
it).  A request without the key gets 401 in its dialect's error shape.  The
check is an aiohttp middleware installed only when a key is set, so a
server without one pays nothing for it.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from .responses import JSON

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MESSAGES_PATH = "/v1/messages"
RESET_PREFIX_CACHE_PATH = "/reset_prefix_cache"  # vLLM's
FLUSH_CACHE_PATH = "/flush_cache"  # SGLang's
_ADMIN_PATHS = frozenset({RESET_PREFIX_CACHE_PATH, FLUSH_CACHE_PATH})
_OPENAI_401 = json.dumps({"error": {"message": "Incorrect API key provided.",
                                    "type": "invalid_request_error", "param": None,
                                    "code": "invalid_api_key"}}).encode()
_ANTHROPIC_401 = json.dumps({"type": "error", "error": {
    "type": "authentication_error", "message": "invalid x-api-key"}}).encode()


def _same(given: str | None, key: bytes) -> bool:
    return given is not None and hmac.compare_digest(given.strip().encode(), key)


def _bearer(header: str | None, key: bytes) -> bool:
    if not header:
        return False
    scheme, _, token = header.strip().partition(" ")
    return scheme.lower() == "bearer" and _same(token, key)


def middleware(api_key: str) -> Middleware:
    """The middleware that answers 401 to a /v1 request, or a cache reset,
    without ``api_key``."""
    key = api_key.encode()

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/v1/") or path in _ADMIN_PATHS:
            headers = request.headers
            if path == MESSAGES_PATH:
                if not (_same(headers.get("x-api-key"), key)
                        or _bearer(headers.get("Authorization"), key)):
                    return web.Response(status=401, body=_ANTHROPIC_401, content_type=JSON)
            elif not _bearer(headers.get("Authorization"), key):
                return web.Response(status=401, body=_OPENAI_401, content_type=JSON)
        return await handler(request)

    return check
