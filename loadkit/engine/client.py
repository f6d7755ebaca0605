"""The load-path HTTP client (aiohttp), its trustworthy defaults, and how
its exceptions map to recorded error kinds.

aiohttp was chosen by measurement (README, design notes): per-request CPU in
the generator becomes measurement error, and aiohttp costs a fraction of
httpx's on this path. httpx stays the control-plane client (pre-flight).
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp

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
                                     ttl_dns_cache=300)
    # sock_read bounds the wait for the first byte and for every later byte.
    timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect,
                                    sock_read=t.first_byte)
    # No cookie jar: a load test replays independent requests, and the jar
    # costs CPU on every response.
    return aiohttp.ClientSession(connector=connector, timeout=timeout,
                                 cookie_jar=aiohttp.DummyCookieJar(),
                                 auto_decompress=True, raise_for_status=False)


class ResponseTooLarge(Exception):
    pass


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Map a load-path exception to its error kind and a short message."""
    name = type(exc).__name__
    text = f"{name}: {exc}"[:300]
    if isinstance(exc, ResponseTooLarge):
        return ErrorKind.PROTOCOL, str(exc)
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return ErrorKind.TIMEOUT, text
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT, text
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                        ConnectionResetError, aiohttp.ClientOSError)):
        return ErrorKind.RESET, text
    # Malformed HTTP, too many redirects, anything else the server got wrong.
    return ErrorKind.PROTOCOL, text
