"""A KServe v2 server over HTTP and gRPC that stamps its own receive and send
times, the same way on both: in the handler, on CLOCK_MONOTONIC (the clock
loadkit stamps with), so what a client adds on either transport is its
latency less the server's own time.

`python tests/grpc_stamp_server.py [--hold-ms 5] [--tokens 8] [--ttft-ms 20]
[--gap-ms 5]` prints `LISTENING http://127.0.0.1:PORT` and, before it,
`GRPC 127.0.0.1:PORT`. One model, `stamp`:

- infer (HTTP `/v2/models/stamp/infer`, gRPC ModelInfer): held `--hold-ms`,
  one output; logged as (received, sent);
- generate_stream (HTTP SSE) and ModelStreamInfer (gRPC): `--tokens` token
  messages, the first `--ttft-ms` after the request arrived, the rest
  `--gap-ms` apart (deadlines from the arrival, so lateness is not carried);
  logged as (received, each token's send...), plus a final
  `triton_final_response` message over gRPC when asked.

GET /stamps returns {"http": [...], "grpc": [...], "http_stream": [...],
"grpc_stream": [...]}: the logs, in seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import uvloop
from aiohttp import web
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pbg

LOG: dict[str, list] = {"http": [], "grpc": [], "http_stream": [], "grpc_stream": []}


async def until(t: float) -> None:
    await asyncio.sleep(max(0.0, t - time.monotonic()))


def metadata() -> dict[str, Any]:
    return {"name": "stamp", "versions": ["1"], "platform": "stamp",
            "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, -1]}],
            "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [1]}]}


def http_app(args: argparse.Namespace) -> web.Application:
    async def infer(request: web.Request) -> web.Response:
        t_in = time.monotonic()
        await request.read()
        await until(t_in + args.hold_ms / 1000)
        body = b'{"model_name":"stamp","outputs":[{"name":"OUTPUT0","datatype":"FP32",' \
               b'"shape":[1],"data":[1.0]}]}'
        LOG["http"].append((t_in, time.monotonic()))
        return web.Response(body=body, content_type="application/json")

    async def stream(request: web.Request) -> web.StreamResponse:
        t_in = time.monotonic()
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        stamps = [t_in]
        for i in range(args.tokens):
            await until(t_in + (args.ttft_ms + i * args.gap_ms) / 1000)
            await resp.write(b'data: {"model_name":"stamp","text_output":" w%d"}\n\n' % i)
            stamps.append(time.monotonic())
        await resp.write_eof()
        LOG["http_stream"].append(stamps)
        return resp

    async def meta(request: web.Request) -> web.Response:
        return web.json_response(metadata())

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"ready": True})

    async def stamps(request: web.Request) -> web.Response:
        return web.json_response(LOG)

    app = web.Application()
    app.router.add_post("/v2/models/stamp/infer", infer)
    app.router.add_post("/v2/models/stamp/generate_stream", stream)
    app.router.add_get("/v2/models/stamp", meta)
    app.router.add_get("/v2/models/stamp/ready", ready)
    app.router.add_get("/stamps", stamps)
    app.router.add_get("/", ready)
    return app


class Stamp(pbg.GRPCInferenceServiceServicer):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    async def ModelReady(self, request: Any, ctx: Any) -> Any:
        return pb.ModelReadyResponse(ready=request.name == "stamp")

    async def ModelMetadata(self, request: Any, ctx: Any) -> Any:
        if request.name != "stamp":
            await ctx.abort(grpc.StatusCode.NOT_FOUND, f"unknown model {request.name}")
        resp = pb.ModelMetadataResponse(name="stamp", versions=["1"], platform="stamp")
        resp.inputs.add(name="INPUT0", datatype="FP32", shape=[-1, -1])
        resp.outputs.add(name="OUTPUT0", datatype="FP32", shape=[1])
        return resp

    async def ModelInfer(self, request: Any, ctx: Any) -> Any:
        t_in = time.monotonic()
        await until(t_in + self.args.hold_ms / 1000)
        resp = pb.ModelInferResponse(model_name="stamp", id=request.id)
        resp.outputs.add(name="OUTPUT0", datatype="FP32", shape=[1])
        resp.raw_output_contents.append(b"\x00\x00\x80\x3f")
        LOG["grpc"].append((t_in, time.monotonic()))
        return resp

    async def ModelStreamInfer(self, requests: Any, ctx: Any) -> AsyncIterator[Any]:
        async for request in requests:
            t_in = time.monotonic()
            stamps = [t_in]
            for i in range(self.args.tokens):
                await until(t_in + (self.args.ttft_ms + i * self.args.gap_ms) / 1000)
                resp = pb.ModelInferResponse(model_name="stamp", id=request.id)
                resp.outputs.add(name="text_output", datatype="BYTES", shape=[1])
                text = b" w%d" % i
                resp.raw_output_contents.append(len(text).to_bytes(4, "little") + text)
                yield pb.ModelStreamInferResponse(infer_response=resp)
                stamps.append(time.monotonic())
            LOG["grpc_stream"].append(stamps)
            ask = request.parameters.get("triton_enable_empty_final_response")
            if ask is not None and ask.bool_param:
                last = pb.ModelInferResponse(model_name="stamp", id=request.id)
                last.parameters["triton_final_response"].bool_param = True
                yield pb.ModelStreamInferResponse(infer_response=last)


async def main(args: argparse.Namespace) -> None:
    server = grpc.aio.server()
    pbg.add_GRPCInferenceServiceServicer_to_server(Stamp(args), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    runner = web.AppRunner(http_app(args), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"GRPC 127.0.0.1:{port}", flush=True)
    print(f"LISTENING http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--hold-ms", type=float, default=5.0)
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--gap-ms", type=float, default=5.0)
    uvloop.run(main(p.parse_args()))
