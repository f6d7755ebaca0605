"""The load path's TLS defaults, the aiohttp session (the `aiohttp`
transport), and how either transport's exceptions map to recorded error kinds.

httpx stays the control-plane client (pre-flight, scraping): its per-request
CPU is several times aiohttp's, which is itself several times the lean
transport's (README, design notes).
"""

from __future__ import annotations

import asyncio
import ssl
from types import SimpleNamespace

import aiohttp

from loadkit.engine.answer import ResponseTooLarge
from loadkit.engine.http1 import MAX_IDLE_S, ConnectFailed, MalformedResponse, now_ns
from loadkit.errors import ErrorKind, InputError
from loadkit.workload.models import Client


def ssl_context(client: Client) -> ssl.SSLContext | bool:
    """Verification on by default; a custom CA bundle, or --insecure to opt out."""
    if client.insecure:
        return False
    try:
        return ssl.create_default_context(cafile=client.ca_bundle)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"cannot load CA bundle {client.ca_bundle!r}: {exc}") from None


def make_session(client: Client) -> aiohttp.ClientSession:
    t = client.timeouts
    connector = aiohttp.TCPConnector(limit=client.connections, ssl=ssl_context(client),
                                     ttl_dns_cache=300, keepalive_timeout=MAX_IDLE_S)
    # sock_read bounds the wait for the first byte and for every later byte.
    timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect,
                                    sock_read=t.first_byte)
    # No cookie jar: a load test replays independent requests, and the jar
    # costs CPU on every response.
    # A request that waited for the connector's cap is told when it ended
    # (Answer.freed): its service time starts there, as with the lean client
    # (a redirect's own wait is no part of it). No cap below the in-flight
    # one, no wait: no tracing cost.
    trace = aiohttp.TraceConfig()
    trace.on_connection_queued_end.append(_freed)
    trace.on_request_redirect.append(_redirected)
    return aiohttp.ClientSession(connector=connector, timeout=timeout,
                                 cookie_jar=aiohttp.DummyCookieJar(),
                                 trace_configs=[trace]
                                 if client.connections < client.max_in_flight else [],
                                 auto_decompress=True, raise_for_status=False)


async def _freed(_session: aiohttp.ClientSession, ctx: SimpleNamespace, _params: object) -> None:
    if ctx.trace_request_ctx is not None and not getattr(ctx, "redirected", False):
        ctx.trace_request_ctx.freed(now_ns())


async def _redirected(_session: aiohttp.ClientSession, ctx: SimpleNamespace,
                      _params: object) -> None:
    ctx.redirected = True


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map a load-path exception to its error kind and a short message."""
    name = type(exc).__name__
    text = f"{name}: {exc}"[:300]
    if isinstance(exc, (ResponseTooLarge, MalformedResponse)):
        return ErrorKind.PROTOCOL, str(exc)[:300]
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ErrorKind.TIMEOUT, text
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectFailed)):
        return ErrorKind.CONNECT, text
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        ConnectionError, aiohttp.ClientOSError)):
        return ErrorKind.RESET, text
    # Malformed HTTP, too many redirects, anything else the server got wrong.
    return ErrorKind.PROTOCOL, text
