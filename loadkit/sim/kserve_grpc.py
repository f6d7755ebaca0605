"""KServe v2 over gRPC: Triton's ``inference.GRPCInferenceService`` (a
superset of KServe's), on the same event loop and serving model as the HTTP
front, with the stubs tritonclient ships (imported here only: the simulator
needs grpcio and tritonclient only when asked for a gRPC port).

``ModelStreamInfer`` on the LLM is the decoupled model Triton serves vLLM
and TensorRT-LLM as: each token event is one ``ModelStreamInferResponse``
(``stream_interval`` tokens per event after the first, as the SSE
dialects), paced by the same admission, batch seat, prefill and decode
steps as ``generate.py``; a request with ``triton_enable_empty_final_response``
gets a last, empty response flagged ``triton_final_response``.  Requests on
one stream are served in turn.  ``ModelInfer`` runs the tensor model
(``kserve_models.py``).  Readiness, metadata and the repository index say
what the HTTP front says.  Refusals at the door (fault-injected 429/5xx, no
live replica) are the matching gRPC status.  The SSE stream quirks of the
fault injector are not played on gRPC; slow-downs and replica deaths are.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from aiohttp import web

from . import kserve_models as km
from .admission import Admission, admission, arrival
from .answer import plan
from .context import SimContext, sleep_until
from .disconnects import Track
from .generate import _prefill_end, _stepper
from .kserve_http import parse_generate
from .serving import ReplicaLost

SERVICE = "inference.GRPCInferenceService"
_CODES = {429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 401: "UNAUTHENTICATED",
          403: "PERMISSION_DENIED", 404: "NOT_FOUND", 400: "INVALID_ARGUMENT"}


class _Headers:
    """What ``admission`` reads of a request: its headers (gRPC metadata)."""

    def __init__(self, metadata: Any) -> None:
        self.headers = {k: v for k, v in (metadata or ()) if isinstance(v, str)}


def _bytes_raw(elements: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(4, "little") + e for e in elements)


def _bytes_elements(raw: bytes) -> list[bytes]:
    out, i = [], 0
    while i + 4 <= len(raw):
        n = int.from_bytes(raw[i:i + 4], "little")
        out.append(raw[i + 4:i + 4 + n])
        i += 4 + n
    return out


def servicer(context: Callable[[], SimContext]) -> Any:
    """The servicer, a subclass of the generated base (unknown methods:
    UNIMPLEMENTED, as Triton without that feature)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pbg

    async def refuse(ctx: Any, exc: km.KServeError) -> None:
        await ctx.abort(getattr(grpc.StatusCode, exc.code), str(exc))

    async def turned_away(ctx: Any, resp: web.Response) -> None:
        body = resp.body if isinstance(resp.body, bytes) else b""
        await ctx.abort(getattr(grpc.StatusCode, _CODES.get(resp.status, "INTERNAL")),
                        body.decode("utf-8", "replace")[:300])

    class Servicer(pbg.GRPCInferenceServiceServicer):
        async def ServerLive(self, request: Any, ctx: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        async def ServerReady(self, request: Any, ctx: Any) -> Any:
            return pb.ServerReadyResponse(ready=km.ready(context()))

        async def ServerMetadata(self, request: Any, ctx: Any) -> Any:
            return pb.ServerMetadataResponse(name="loadkit-sim", version="1",
                                             extensions=["model_repository"])

        async def ModelReady(self, request: Any, ctx: Any) -> Any:
            sim = context()
            try:
                km.kind_of(sim, request.name, request.version)
            except km.KServeError:
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=km.ready(sim))

        async def ModelMetadata(self, request: Any, ctx: Any) -> Any:
            try:
                km.kind_of(context(), request.name, request.version)
                meta = km.metadata(context(), request.name)
            except km.KServeError as exc:
                await refuse(ctx, exc)
            resp = pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"],
                                            platform=meta["platform"])
            for key in ("inputs", "outputs"):
                for t in meta[key]:
                    getattr(resp, key).add(name=t["name"], datatype=t["datatype"],
                                           shape=t["shape"])
            return resp

        async def RepositoryIndex(self, request: Any, ctx: Any) -> Any:
            resp = pb.RepositoryIndexResponse()
            for m in km.index(context()):
                if not request.ready or m["state"] == "READY":
                    resp.models.add(**m)
            return resp

        async def ModelInfer(self, request: Any, ctx: Any) -> Any:
            sim = context()
            t0 = await arrival(sim)
            try:
                if km.kind_of(sim, request.model_name, request.model_version) != "tensor":
                    raise km.KServeError("ModelInfer RPC doesn't support models with "
                                         "decoupled transaction policy: use "
                                         "ModelStreamInfer", 400, "UNIMPLEMENTED")
                inputs = [(t.name, t.datatype, list(t.shape)) for t in request.inputs]
                km.check_tensor_inputs(inputs)
            except km.KServeError as exc:
                await refuse(ctx, exc)
            nbytes = sum(len(r) for r in request.raw_input_contents)
            shim = cast(web.Request, _Headers(ctx.invocation_metadata()))
            with admission(sim, shim, t0, 1) as admitted:
                if not isinstance(admitted, Admission):
                    await turned_away(ctx, admitted)
                    return None
                done = await km.tensor_work(sim, admitted, nbytes, t0)
                if done is None:
                    await ctx.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed: the replica "
                                    "serving the request was lost")
                resp = pb.ModelInferResponse(model_name=request.model_name, model_version="1",
                                             id=request.id)
                resp.outputs.add(name="OUTPUT0", datatype="FP32", shape=[1])
                resp.raw_output_contents.append(_fp32(nbytes))
                return resp

        async def ModelStreamInfer(self, requests: Any, ctx: Any
                                   ) -> AsyncIterator[Any]:
            sim = context()
            async for request in requests:
                async for msg in _stream(sim, request, ctx, pb, refuse, turned_away):
                    yield msg

    return Servicer()


def _fp32(value: float) -> bytes:
    return struct.pack("<f", value)


async def _stream(sim: SimContext, request: Any, ctx: Any, pb: Any, refuse: Any,
                  turned_away: Any) -> AsyncIterator[Any]:
    """One decoupled LLM request: its token responses, then the final flag. A
    client that cancels the stream is noted as a hang-up (disconnects.py),
    honoured: generation stops where it is and the seat goes back (the fault
    ignore_disconnect is not played on gRPC)."""
    track = Track(sim.metrics, sim.injector, sim.disconnects, "kserve", sim.loop.time())
    track.stream = True
    try:
        async for msg in _decode(sim, request, ctx, pb, refuse, turned_away, track):
            yield msg
    except asyncio.CancelledError:
        # grpc.aio cancels the handler when its client cancels the stream
        # (ctx.cancelled() is not yet set then); a server stopping cancels
        # too, but only after its grace, when no measurement is left to spoil.
        track.leave(sim.loop.time())
        raise


async def _decode(sim: SimContext, request: Any, ctx: Any, pb: Any, refuse: Any,
                  turned_away: Any, track: Track) -> AsyncIterator[Any]:
    import grpc

    loop, dep = sim.loop, sim.deployment
    t0 = track.arrival = await arrival(sim)
    try:
        if km.kind_of(sim, request.model_name, request.model_version) != "llm":
            raise km.KServeError("the tensor model is not decoupled: use ModelInfer")
        req = parse_generate(json.dumps(_generate_body(request)).encode(),
                             sim.config.output_tokens, True)
    except km.KServeError as exc:
        await refuse(ctx, exc)
    except ValueError as exc:  # RequestError
        await refuse(ctx, km.KServeError(str(exc)))
    final = request.parameters.get("triton_enable_empty_final_response")
    kv = req.prompt_tokens + req.generated
    if not dep.fits_at_all(kv):
        await refuse(ctx, km.KServeError(f"this request needs {kv} tokens of KV-cache; a "
                                         f"replica holds {sim.config.kv_cache_tokens}"))
    shim = cast(web.Request, _Headers(ctx.invocation_metadata()))
    with admission(sim, shim, t0, req.generated) as admitted:
        if not isinstance(admitted, Admission):
            track.admitted(None, False)
            await turned_away(ctx, admitted)
            return
        rep, fate = admitted.replica, admitted.fate
        track.admitted(rep.index, False)
        answer = plan(req, "words", sim.vocab, sim.draws)
        try:
            ticket = await dep.acquire(rep, kv, 0, t0, lambda: None)
        except ReplicaLost:
            await ctx.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")
        admitted.seated(ticket.admitted_at)
        head = {"model_name": request.model_name, "model_version": "1", "id": request.id}
        finished, sent = None, 0
        try:
            first = _prefill_end(sim, rep, fate, req, ticket.admitted_at)
            step = _stepper(sim, rep, fate)
            base, per_seq = sim.itl_s, sim.itl_s_per_seq
            n, every, d = req.generated, sim.config.stream_interval, first
            for i in range(n):
                if i:
                    d = d + base + per_seq * rep.running if step is None else step(d)
                if i and i % every and i != n - 1:
                    continue
                await sleep_until(loop, d)
                if ticket.state != "running":
                    await ctx.abort(grpc.StatusCode.UNAVAILABLE,
                                    "Socket closed: the replica was lost")
                text = json.loads(answer.chunk(sent, i + 1)).encode()
                resp = pb.ModelInferResponse(**head)
                resp.outputs.add(name="text_output", datatype="BYTES", shape=[1])
                resp.raw_output_contents.append(_bytes_raw([text]))
                yield pb.ModelStreamInferResponse(infer_response=resp)
                track.sent = sent = i + 1
                if i == 0:
                    admitted.first_token(first, req.prompt_tokens)
            admitted.answered(d)
            finished = d
            if final is not None and final.bool_param:
                last = pb.ModelInferResponse(**head)
                last.parameters["triton_final_response"].bool_param = True
                yield pb.ModelStreamInferResponse(infer_response=last)
        finally:
            sim.metrics.generation_tokens += sent
            dep.release(ticket, loop.time() if finished is None else finished)


def _generate_body(request: Any) -> dict[str, Any]:
    """text_input and max_tokens of a ModelInferRequest, as generate's JSON."""
    body: dict[str, Any] = {}
    for i, t in enumerate(request.inputs):
        raw = request.raw_input_contents[i] if i < len(request.raw_input_contents) else None
        if t.name == "text_input":
            items = _bytes_elements(raw) if raw is not None else list(t.contents.bytes_contents)
            body["text_input"] = b"".join(items).decode("utf-8", "replace")
        elif t.name == "max_tokens":
            body["max_tokens"] = (int.from_bytes(raw[:4], "little", signed=True)
                                  if raw is not None else int(t.contents.int_contents[0]))
    return body


async def serve_grpc(context: Callable[[], SimContext], host: str, port: int
                     ) -> tuple[Any, int]:
    """Start the gRPC front on ``host:port`` (0: a free port), on the running loop;
    return (server, its port). Stop it with ``await server.stop(grace)``."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc as pbg

    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 256 * 2**20),
                                      ("grpc.max_send_message_length", 256 * 2**20)])
    pbg.add_GRPCInferenceServiceServicer_to_server(servicer(context), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if not bound:
        raise OSError(f"cannot bind gRPC on {host}:{port}")
    await server.start()
    return server, bound
