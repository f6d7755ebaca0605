"""The load-path gRPC client: grpc.aio on loadkit's own event loop (uvloop).

Bodies go out as the bytes the protocol adapter spliced, and answers come
back as bytes (no serializers: the channel's identity codec), so the engine
knows nothing of protobuf and the client does nothing between its stamps but
hand bytes to grpc. The stamps follow the HTTP path's discipline: `sent` is
taken by the runner before the body is built; each answer message is
stamped when the coroutine that reads it resumes (the first one is
`first`, every one a token event for a stream); `end` is the message that
completes the answer (a unary answer, a stream's `triton_final_response`)
or the stream's end. The schedule stays open-loop: every request is its own
call on a shared channel, whatever the others are doing.

grpc.aio works on uvloop (grpcio >= 1.32 polls its completion queue on a
thread and wakes the running loop through a socket it watches with
add_reader, which uvloop implements); channels must be made on the loop
that uses them, so they are opened lazily, inside the run.

A non-OK status is a failure of the closest kind the HTTP path records
(docs/kserve.md has the table): DEADLINE_EXCEEDED is a timeout; UNAVAILABLE
before any answer with a failed connect is `connect`, with a broken
connection `reset`, otherwise an HTTP 503; CANCELLED by the server is a
reset; the rest take the HTTP status gRPC-gateway gives them (NOT_FOUND 404,
UNIMPLEMENTED 404 as the route is not served, INVALID_ARGUMENT 400,
UNAUTHENTICATED 401, PERMISSION_DENIED 403, RESOURCE_EXHAUSTED 429 unless it
is the size cap, INTERNAL/UNKNOWN/DATA_LOSS 500), so refusals stop a run
through the probe and fail-fast as an HTTP 4xx does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadkit.engine.adapter import GrpcCall, PreparedRequest
from loadkit.engine.answer import Answer, ResponseTooLarge
from loadkit.engine.grpc_stubs import grpc_module
from loadkit.engine.http1 import ConnectFailed, ServerDisconnected
from loadkit.workload.models import Client

now_ns = time.monotonic_ns
MAX_SEND = 256 * 2**20  # large tensors are a workload's business, not a client limit

# gRPC status name -> the HTTP status it is recorded as
HTTP_EQUIVALENT = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
                   "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404,
                   "UNIMPLEMENTED": 404, "ALREADY_EXISTS": 409, "ABORTED": 409,
                   "RESOURCE_EXHAUSTED": 429, "INTERNAL": 500, "UNKNOWN": 500,
                   "DATA_LOSS": 500, "UNAVAILABLE": 503}
_CONNECT = ("failed to connect", "connection refused", "dns resolution", "name resolution",
            "no address", "connect failed")
_RESET = ("socket closed", "connection reset", "broken pipe", "stream removed", "goaway",
          "rst_stream", "end of tcp stream", "connection closed")


class GrpcTransport:
    """One channel per address, shared by every request to it (HTTP/2
    multiplexes them); `sends` carries the HTTP requests of a mixed workload."""

    def __init__(self, requests: list[list[PreparedRequest]], client: Client,
                 http: Any) -> None:
        self.grpc = grpc_module()
        self.http, self.client = http, client
        self.calls: list[list[GrpcCall | None]] = [[r.grpc for r in row] for row in requests]
        self.channels: dict[str, Any] = {}
        self.stubs: dict[tuple[str, str, bool], Any] = {}

    def _stub(self, call: GrpcCall) -> Any:
        key = (call.address, call.method, call.stream)
        stub = self.stubs.get(key)
        if stub is None:
            channel = self.channels.get(call.address)
            if channel is None:
                limit = self.client.max_response_bytes
                channel = self.channels[call.address] = self.grpc.aio.insecure_channel(
                    call.address, options=[("grpc.max_receive_message_length", limit),
                                           ("grpc.max_send_message_length", MAX_SEND),
                                           ("grpc.enable_retries", 0)])
            make = channel.stream_stream if call.stream else channel.unary_unary
            stub = self.stubs[key] = make(call.method)
        return stub

    async def send(self, tenant: int, scenario: int, body: bytes | None,
                   answer: Answer) -> int:
        call = self.calls[tenant][scenario]
        if call is None:
            return int(await self.http.send(tenant, scenario, body, answer))
        stub, t = self._stub(call), self.client.timeouts
        rpc = self.grpc.aio.AioRpcError
        try:
            if not call.stream:
                raw = await stub(body or b"", timeout=t.total, metadata=call.metadata or None)
                at = now_ns()
                answer.status(200, at)
                answer.body(raw, at)
                return at
            return await self._stream(stub, call, body or b"", answer)
        except rpc as exc:
            return self._failed(exc, answer)

    async def _stream(self, stub: Any, call: GrpcCall, body: bytes, answer: Answer) -> int:
        t = self.client.timeouts
        rpc = stub(timeout=t.total, metadata=call.metadata or None)
        end = 0
        try:
            await rpc.write(body)
            await rpc.done_writing()
            # Idle timeout between messages, as the HTTP path's first_byte:
            # one timer re-armed per message, no task per read.
            async with asyncio.timeout(t.first_byte) as idle:
                loop = asyncio.get_running_loop()
                while True:
                    msg = await rpc.read()
                    at = now_ns()
                    if msg is self.grpc.aio.EOF:
                        break
                    if not end:
                        answer.status(200, at)
                    end = at
                    answer.body(msg, at)
                    if not answer.wants_body or (answer.parser is not None
                                                 and answer.parser.ended):
                        break
                    idle.reschedule(loop.time() + t.first_byte)
        except TimeoutError:
            rpc.cancel()
            raise TimeoutError(f"waited {t.first_byte:g} s for "
                               f"{'a' if end else 'the first'} message") from None
        except BaseException:
            rpc.cancel()  # cut (a cap, a client that left, a cancel): the server sees it
            raise
        if not end:  # no message: the status says why
            code = await rpc.code()
            if code != self.grpc.StatusCode.OK:
                return self._status(code.name, await rpc.details() or "", answer)
            answer.status(200, now_ns())
        return end or now_ns()

    def _failed(self, exc: Any, answer: Answer) -> int:
        return self._status(exc.code().name, exc.details() or "", answer)

    def _status(self, name: str, details: str, answer: Answer) -> int:
        """Record a non-OK status as its closest HTTP-path failure."""
        low = details.lower()
        said = f"gRPC {name}: {details[:240]}"
        if name == "DEADLINE_EXCEEDED":
            raise TimeoutError(said)
        if name == "UNAVAILABLE" and any(s in low for s in _CONNECT):
            raise ConnectFailed(said)
        if name in ("UNAVAILABLE", "CANCELLED", "INTERNAL") and any(s in low for s in _RESET):
            raise ServerDisconnected(said)
        if name == "CANCELLED":
            raise ServerDisconnected(said)
        if name == "RESOURCE_EXHAUSTED" and "larger than max" in low:
            raise ResponseTooLarge(said)
        at = now_ns()
        answer.status(HTTP_EQUIVALENT.get(name, 500), at)
        answer.body(said.encode(), at)
        return at

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self.channels.values()),
                             return_exceptions=True)
        await self.http.close()
