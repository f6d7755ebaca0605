"""The lean load-path HTTP/1.1 client: asyncio (uvloop) protocols, parsed by
httptools (the llhttp bindings behind uvicorn), one origin, keep-alive pool.

Why not aiohttp on this path: every microsecond the client spends between
its `sent` stamp and the socket, or between the last byte and its `end`
stamp, is added to every latency it reports, and aiohttp adds several times
this client's (its body is written by a separate task on Python 3.11; the
figures are in docs/design.md). Body bytes reach the receiver inside
`data_received`, stamped there: no task wake-up per streamed chunk.

The receiver (the engine's `Answer`) is called synchronously:
`status(code, t_ns)`, then `body(chunk, t_ns)` per read, and it may raise
to abort the exchange (size cap, broken stream); its `wants_body` going
false ends the exchange early (an error body read far enough). Once it is
`ended` (a stream's end marker), the rest of the message gets END_GRACE_S:
a server that holds the response open after [DONE] costs the connection,
never the answer.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from collections import deque
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from loadkit.errors import InputError
from loadkit.urls import authority, basic_authorization

now_ns = time.monotonic_ns
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
INFLATE_STEP = 1 << 20  # inflate in pieces, so the size cap stops a gzip bomb early
# The status line and headers of one answer, at most (aiohttp: 8 KiB a line,
# h11: 16 KiB): httptools joins a header's pieces by concatenation, so an
# endless header would stall the loop that releases requests, quadratically.
MAX_HEAD_BYTES = 256 * 1024
# A connection idle this long is not reused: servers close idle keep-alive
# connections (uvicorn and Node after 5 s), and one reused as its close
# arrives fails a request the server never saw (a loop running late widens
# that race: a transformers-serve run counted one as `reset`).
MAX_IDLE_S = 4.0
# After a stream's end marker, how long the rest of its message (the chunked
# terminator) may take before the exchange ends without it.
END_GRACE_S = 0.1


class ConnectFailed(OSError):
    """The TCP or TLS connection to the target could not be made."""


class ServerDisconnected(ConnectionError):
    """The server closed the connection before the response was complete."""


class MalformedResponse(Exception):
    """The bytes from the server are not HTTP/1.1."""


class Receiver(Protocol):
    wants_body: bool
    ok: bool  # its status is a success

    @property
    def ended(self) -> bool: ...

    def freed(self, t: int) -> None: ...

    def status(self, code: int, t: int) -> None: ...

    def body(self, data: bytes, t: int) -> None: ...


class Pool:
    """Keep-alive connections to one origin, at most `limit` open at once."""

    def __init__(self, base_url: str, *, limit: int, ssl_ctx: ssl.SSLContext | bool,
                 connect_s: float, idle_s: float, total_s: float,
                 follow_redirects: bool) -> None:
        url = urlsplit(base_url)
        self.secure = url.scheme == "https"
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if self.secure else 80)
        self.authority = authority(base_url)
        self.basic = basic_authorization(base_url)  # http://user:pass@host, as aiohttp and curl do
        self.prefix = url.path.rstrip("/")
        self.ssl = (ssl_ctx or _no_verify()) if self.secure else None
        self.limit, self.connect_s, self.idle_s, self.total_s = limit, connect_s, idle_s, total_s
        self.follow = follow_redirects
        self._idle: list[_Conn] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    def head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        """The request line and fixed headers, built once per scenario."""
        given = {k.lower() for k in headers}
        defaults = {"Host": self.authority, "Accept-Encoding": "gzip, deflate",
                    "User-Agent": "loadkit"}
        if self.basic:
            defaults["Authorization"] = self.basic
        lines = [f"{method} {self.prefix}{path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in defaults.items() if k.lower() not in given]
        lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "content-length"]
        if any(c in line for line in lines for c in "\r\n\0"):
            raise InputError(f"a header of {method} {path} holds a line break or NUL "
                             "(check the workload's headers and the ${VAR}s they name)")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def exchange(self, method: str, head: bytes, body: bytes | None,
                       receiver: Receiver) -> None:
        """Send one request and feed its answer to `receiver` until complete."""
        for hop in range(MAX_REDIRECTS + 1):
            payload = head + (b"Content-Length: %d\r\n\r\n" % len(body) + body
                              if body is not None else b"\r\n")
            conn, woke = await self._acquire()
            if woke is not None and hop == 0:  # it waited for the pool's cap
                receiver.freed(woke)
            ex = _Exchange(method, receiver, self.follow)
            try:
                await conn.run(ex, payload, self.idle_s, self.total_s)
            finally:
                self._release(conn)
            if ex.location is None:
                return
            method, head, body = self._redirect(method, head, body, ex)
        raise MalformedResponse(f"more than {MAX_REDIRECTS} redirects")

    def _redirect(self, method: str, head: bytes, body: bytes | None,
                  ex: _Exchange) -> tuple[str, bytes, bytes | None]:
        """The same request to the new path (heads never hold a Content-Length)."""
        loc = urlsplit(ex.location or "")
        if loc.netloc and (loc.hostname, loc.port or self.port) != (self.host, self.port):
            raise MalformedResponse(f"redirect to another origin not followed: {ex.location}")
        target = (loc.path or "/") + (f"?{loc.query}" if loc.query else "")
        if ex.code in (301, 302, 303) and method != "HEAD":
            method, body = "GET", None  # as browsers and HTTP clients do
        line = f"{method} {target} HTTP/1.1\r\n".encode("latin-1")
        return method, line + head.partition(b"\r\n")[2], body

    async def _acquire(self) -> tuple[_Conn, int | None]:
        """A connection, and when the last wait for one ended (None: no wait)."""
        woke = None
        while True:
            while self._idle:
                conn = self._idle.pop()  # LIFO: the warmest connection
                if conn.usable and now_ns() - conn.t < MAX_IDLE_S * 1e9:
                    return conn, woke
                conn.close()  # closed by the server, or soon to be
                self._open -= 1
            if self._open < self.limit:
                self._open += 1
                try:
                    return await self._connect(), woke
                except BaseException:
                    self._open -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on: it was meant for someone
                raise
            woke = now_ns()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                _Conn, self.host, self.port, ssl=self.ssl,
                server_hostname=self.host if self.ssl else None), self.connect_s)
        except TimeoutError:
            raise ConnectFailed(f"connect to {self.host}:{self.port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(f"connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _release(self, conn: _Conn) -> None:
        if conn.usable:
            self._idle.append(conn)
        else:
            self._open -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class _Exchange:
    """One request's answer in progress on a connection."""

    __slots__ = ("method", "receiver", "follow", "code", "location", "headers_done",
                 "length_known", "chunks", "inflate", "done", "keep_alive", "interim",
                 "head_bytes", "grace")

    def __init__(self, method: str, receiver: Receiver, follow: bool) -> None:
        self.method, self.receiver, self.follow = method, receiver, follow
        self.code = 0
        self.location: str | None = None
        self.headers_done = self.length_known = self.done = self.interim = False
        self.keep_alive = True
        self.head_bytes = 0  # read before the headers were complete
        self.grace = False  # the answer ended: the message's rest has END_GRACE_S
        self.chunks: list[bytes] = []
        self.inflate: zlib._Decompress | None = None


class _Conn(asyncio.Protocol):
    """One connection; at most one exchange at a time (no pipelining)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: _Exchange | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.usable = True
        self.t = 0  # monotonic ns of the latest read: its stamp, and the idle timeout's

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport

    def data_received(self, data: bytes) -> None:
        t = now_ns()
        ex = self.ex
        if ex is None:  # bytes nobody asked for: this connection is not reusable
            self.close()
            return
        self.t = t
        try:
            head = not ex.headers_done
            self.parser.feed_data(data)
            if head and not ex.headers_done:
                ex.head_bytes += len(data)
                if ex.head_bytes > MAX_HEAD_BYTES:
                    raise MalformedResponse(f"response headers longer than "
                                            f"{MAX_HEAD_BYTES // 1024} KiB")
            if ex.chunks:
                if ex.location:  # a redirect's own body: not the answer
                    ex.chunks.clear()
                else:
                    self._deliver(ex, t)
        except httptools.HttpParserCallbackError as exc:  # a bug of ours, not the server's
            self._fail(exc.__cause__ or exc.__context__ or exc)
            return
        except httptools.HttpParserError as exc:
            self._fail(MalformedResponse(f"malformed HTTP response: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - the receiver's own verdict (cap, parse)
            self._fail(exc)
            return
        if ex.done or (ex.headers_done and not ex.receiver.wants_body and not ex.location):
            self._finish(ex)
        elif not ex.grace and ex.receiver.ended:
            ex.grace = True
            if self.timer is not None:
                self.timer.cancel()
            self.timer = asyncio.get_running_loop().call_later(END_GRACE_S, self._grace_over, ex)

    def _grace_over(self, ex: _Exchange) -> None:
        if self.ex is ex:
            self._finish(ex)  # not done: the connection goes, the answer stands

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        ex = self.ex
        if ex is None:
            return
        if ex.headers_done and not ex.length_known and (exc is None or not ex.receiver.ok):
            # A body delimited by the close: a reset cuts an answer (a failure),
            # and an error body stays the HTTP error it is.
            self._finish(ex)
        else:
            self._fail(ServerDisconnected(
                "server closed the connection before the response was complete"
                + (f" ({exc})" if exc else "")))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        ex = self.ex
        assert ex is not None
        key = name.lower()
        if key == b"content-encoding" and value.strip().lower() in (b"gzip", b"deflate"):
            ex.inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, by header
        elif key in (b"content-length", b"transfer-encoding"):
            ex.length_known = True
        elif key == b"location":
            ex.location = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        ex.code = self.parser.get_status_code()
        if 100 <= ex.code < 200:  # 100 Continue and friends: the answer follows
            ex.interim, ex.location, ex.inflate, ex.length_known = True, None, None, False
            return
        ex.headers_done = True
        ex.keep_alive = self.parser.should_keep_alive()
        if not (ex.follow and ex.code in REDIRECTS and ex.location):
            ex.location = None
            ex.receiver.status(ex.code, self.t)
        if ex.method == "HEAD" or ex.code in (204, 304):
            ex.done, ex.length_known, ex.keep_alive = True, True, False

    def on_body(self, body: bytes) -> None:
        self.ex.chunks.append(body)  # type: ignore[union-attr]  # only during an exchange

    def on_message_complete(self) -> None:
        ex = self.ex
        assert ex is not None
        if ex.interim:
            ex.interim = False
        else:
            ex.done = True

    # the exchange

    async def run(self, ex: _Exchange, payload: bytes, idle_s: float, total_s: float) -> None:
        loop = asyncio.get_running_loop()
        self.ex, self.waiter = ex, loop.create_future()
        self.t = start = now_ns()
        # One timer per exchange, re-armed only when it fires early: no
        # timer work per received chunk.
        self.timer = loop.call_later(min(idle_s, total_s), self._check, start, idle_s, total_s)
        try:
            assert self.transport is not None
            self.transport.write(payload)
            await self.waiter
        except BaseException:
            self.close()  # cancelled or failed mid-exchange: never reuse
            raise
        finally:
            if self.timer is not None:
                self.timer.cancel()
            self.ex = self.waiter = self.timer = None

    def _check(self, start: int, idle_s: float, total_s: float) -> None:
        if self.ex is None:
            return
        now = now_ns()
        if now - start >= total_s * 1e9:
            self._fail(TimeoutError(f"no complete response within {total_s:g} s"))
        elif now - self.t >= idle_s * 1e9:
            what = "a byte" if self.ex.headers_done else "the first byte"
            self._fail(TimeoutError(f"waited {idle_s:g} s for {what}"))
        else:
            due = min(self.t + idle_s * 1e9, start + total_s * 1e9)
            self.timer = asyncio.get_running_loop().call_later(
                (due - now) / 1e9, self._check, start, idle_s, total_s)

    def _deliver(self, ex: _Exchange, t: int) -> None:
        data = b"".join(ex.chunks) if len(ex.chunks) > 1 else ex.chunks[0]
        ex.chunks.clear()
        inflate = ex.inflate
        if inflate is None:
            ex.receiver.body(data, t)
            return
        while piece := inflate.decompress(data, INFLATE_STEP):
            ex.receiver.body(piece, t)  # raises at the size cap
            data = inflate.unconsumed_tail

    def _finish(self, ex: _Exchange) -> None:
        if not (ex.done and ex.keep_alive):
            self.close()  # cut short, or the server asked: never reuse
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def close(self) -> None:
        self.usable = False
        if self.transport is not None:
            self.transport.abort()  # mid-exchange or idle: nothing left to say to it


def _no_verify() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
