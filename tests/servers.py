"""Test servers whose behaviour (and so the right answer) we control.

Run as a separate process (`python tests/servers.py MODE`) so their CPU is
off the generator's event loop, like a real target. Prints
`LISTENING http://127.0.0.1:PORT` when bound. Modes:

- delay:    each request sleeps a seeded random delay (mostly 5-60 ms, 3% at
            250-400 ms) and logs its own handling time of every POST; GET
            /truth returns them in ms (the server-side truth).
- stall:    answers in 2 ms, except that the first request arriving after
            `--stall-at` seconds (from the first request to a path other
            than `/`, which the reachability check asks) holds the server for
            `--stall` seconds, during which every request waits (one worker,
            like a stop-the-world GC pause).
- record:   answers every POST at once like a non-streaming OpenAI server
            (`usage` from the request's max_tokens) and logs (arrival time on
            CLOCK_MONOTONIC, body); GET /log returns the log, GET /v1/models
            lists `recorded-model`.
- truth:    a bare asyncio protocol (no framework between the socket and
            the clock): each request is answered after a seeded delay (mostly
            1-20 ms, 3% at 40-80 ms, drawn in arrival order) and logs its
            socket-level time, first request byte read to last response byte
            written. GET /truth returns those times in ms, GET /stamps the stamps
            (CLOCK_MONOTONIC seconds, the clock loadkit stamps with); POST /reset starts a
            fresh log and the same delay sequence again.
- openai:   a strict OpenAI-compatible server: GET /v1/models lists
            `--models`; a chat completion (streamed or not) for another model is
            a 404, one without `Authorization: Bearer --key` (when given) a 401,
            and every one after `--refuse-after` seconds (from the first) a 403;
            those in the first `--limited-for` seconds a 429 (a rate limit).
            GET /log returns the models asked for.
- serial:   one request at a time (a server of one seat): each POST waits its
            turn, then holds the seat `--hold` seconds; GET /served returns
            the wall-clock time (time.time()) each one finished, in order.
- faults:   one path per failure: /ok, /status/NNN, /reset (closes the socket
            mid-response), /hang, /garbage (not HTTP), /big (a huge body),
            /redirect, /slow-stream (SSE that stops sending), /gzip-bomb (5 MB
            inflated from 5 KB), /after-done (token events after [DONE]),
            /trickle/ and /trickle/v1/models (a byte every 0.2 s, no end);
            valid but unusual: /gzip, /close-delimited.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import random
import socket
import sys
import time
from typing import cast

from aiohttp import web


def delay_app(seed: int) -> web.Application:
    rng = random.Random(seed)
    truth: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        t0 = time.monotonic()
        await request.read()
        d = rng.uniform(0.250, 0.400) if rng.random() < 0.03 else rng.uniform(0.005, 0.060)
        await asyncio.sleep(d)
        resp = web.json_response({"ok": True})
        if request.method == "POST":  # not loadkit's GET pre-flight
            truth.append((time.monotonic() - t0) * 1000.0)
        return resp

    async def get_truth(request: web.Request) -> web.Response:
        return web.json_response(truth)

    app = web.Application()
    app.router.add_get("/truth", get_truth)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def serial_app(hold_s: float) -> web.Application:
    seat = asyncio.Lock()
    served: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if request.method != "POST":  # loadkit's pre-flight
            return web.json_response({"ok": True})
        async with seat:
            await asyncio.sleep(hold_s)
            served.append(time.time())
        return web.json_response({"ok": True})

    async def get_served(request: web.Request) -> web.Response:
        return web.json_response(served)

    app = web.Application()
    app.router.add_get("/served", get_served)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def stall_app(stall_at: float, stall: float) -> web.Application:
    lock = asyncio.Lock()
    first: list[float] = []
    stalled: list[bool] = []

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        if request.path != "/":  # GET / is loadkit's reachability check, before the run
            first[:] = first or [now]
        async with lock:  # one worker: a stall holds everyone behind it
            if not stalled and first and now - first[0] >= stall_at:
                stalled.append(True)
                await asyncio.sleep(stall)
            await asyncio.sleep(0.002)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def record_app() -> web.Application:
    log: list[dict] = []

    async def handle(request: web.Request) -> web.Response:
        t = time.monotonic()
        body = await request.json()
        log.append({"t": t, "body": body, "headers": dict(request.headers)})
        n = body.get("max_tokens") or 1
        return web.json_response({"choices": [{"message": {"content": "ok " * n}}],
                                  "usage": {"completion_tokens": n}})

    async def get_log(request: web.Request) -> web.Response:
        return web.json_response(log)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "recorded-model"}]})

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/log", get_log)
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def split_request(buf: bytes) -> tuple[str, bytes] | None:
    """(the first whole request's head, what follows its body), or None until
    one has arrived: HTTP/1.1, Content-Length bodies only."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    return head, buf[end + 4 + length:]


class TruthProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive, Content-Length bodies only: enough for the clients
    under test, and nothing of its own between the socket and the stamps."""

    RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Content-Length: 11\r\n\r\n{\"ok\":true}")

    def __init__(self, state: dict) -> None:
        self.state = state
        self.buf = b""
        self.t_in: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream server's

    def data_received(self, data: bytes) -> None:
        if self.t_in is None:
            self.t_in = time.monotonic()
        self.buf += data
        while (request := split_request(self.buf)) is not None:
            head, self.buf = request
            t_in, self.t_in = self.t_in, (time.monotonic() if self.buf else None)
            assert t_in is not None  # set when this request's first bytes came
            self.answer(head.split(" ")[0], head.split(" ")[1], t_in)

    def answer(self, method: str, path: str, t_in: float) -> None:
        state, loop = self.state, asyncio.get_running_loop()
        if path in ("/truth", "/stamps"):
            log = state["log"]
            body = json.dumps([(b - a) * 1000.0 for a, b in log] if path == "/truth" else log).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            return
        if path == "/reset":
            state["log"], state["rng"] = [], random.Random(state["seed"])
            self.transport.write(self.RESPONSE)
            return
        rng = state["rng"]
        delay = rng.uniform(0.040, 0.080) if rng.random() < 0.03 else rng.uniform(0.001, 0.020)

        def reply() -> None:
            self.transport.write(self.RESPONSE)  # small: straight into the socket
            if method == "POST":  # not loadkit's GET pre-flight
                state["log"].append((t_in, time.monotonic()))
        loop.call_at(loop.time() + delay, reply)


async def truth_server(seed: int) -> asyncio.Server:
    state = {"seed": seed, "rng": random.Random(seed), "log": []}
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: TruthProtocol(state), "127.0.0.1", 0)


def openai_app(models: list[str], key: str | None, refuse_after: float | None,
               protect_models: bool = False, close_on_refusal: bool = False,
               limited_for: float | None = None) -> web.Application:
    state: dict = {"first": None, "asked": []}

    def refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": {"message": message, "type": "invalid_request_error"}},
                                 status=status)

    def refuse_and_close(request: web.Request, status: int, message: str) -> web.Response:
        """A proxy's way: the refusal, then the connection closed, with no
        `Connection: close` to warn the client that it will be."""
        body = json.dumps({"error": {"message": message}}).encode()
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 %d Refused\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (status, len(body), body))
        transport.close()
        return web.Response()

    async def list_models(request: web.Request) -> web.Response:
        if protect_models and request.headers.get("Authorization") != f"Bearer {key}":
            return refuse(401, "Invalid API key provided.")  # vLLM --api-key: all of /v1
        return web.json_response({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "test"} for m in models]})

    async def chat(request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        state["first"] = state["first"] or now
        body = await request.json()
        state["asked"].append(body.get("model"))
        if key and request.headers.get("Authorization") != f"Bearer {key}":
            if close_on_refusal:
                return refuse_and_close(request, 401, "Invalid API key provided.")
            return refuse(401, "Invalid API key provided.")
        if refuse_after is not None and now - state["first"] >= refuse_after:
            return refuse(403, "You exceeded your current quota.")
        if limited_for is not None and now - state["first"] < limited_for:
            return refuse(429, "Rate limit reached; slow down.")
        if body.get("model") not in models:
            return refuse(404, f"The model `{body.get('model')}` does not exist.")
        n = int(body.get("max_tokens") or 4)
        if not body.get("stream"):
            return web.json_response({"choices": [{"message": {"content": "ok " * n}}],
                                      "usage": {"completion_tokens": n}})
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(n):
            await resp.write(b'data: {"choices":[{"delta":{"content":"ok "}}]}\n\n')
        await resp.write(b'data: {"choices":[],"usage":{"completion_tokens":%d}}\n\n'
                         b"data: [DONE]\n\n" % n)
        return resp

    async def log(request: web.Request) -> web.Response:
        return web.json_response(state["asked"])

    app = web.Application()
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/log", log)
    app.router.add_get("/", root)
    return app


async def root(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def faults_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope <b>bold</b>")

    async def reset(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        transport = request.transport
        assert transport is not None
        transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        transport.close()
        return resp

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5_000_000)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def garbage(request: web.Request) -> web.Response:
        transport = request.transport
        assert transport is not None
        transport.write(b"NOT HTTP AT ALL\r\n\r\n")
        transport.close()
        return web.Response()

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n')
        await asyncio.sleep(3600)
        return resp

    async def after_done(request: web.Request) -> web.StreamResponse:
        # A whole answer (4 tokens, finish_reason, [DONE]), then, a second
        # later, 3 more token events no client should count.
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        token = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        await resp.write(token * 3 + b'data: {"choices":[{"index":0,"delta":{"content":"a"},'
                         b'"finish_reason":"length"}]}\n\ndata: [DONE]\n\n')
        await asyncio.sleep(1.0)
        await resp.write(token * 3)
        return resp

    async def trickle(request: web.Request) -> web.StreamResponse:
        # 200, then a byte every 0.2 s, without end: each read is quick, the
        # answer never whole.
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            await resp.write(b" ")
            await asyncio.sleep(0.2)

    # Compressed once: 5 MB compressed per request on this loop delayed the
    # later of ten past a 300 ms first-byte timeout on a busy host (ci49).
    bomb = gzip.compress(b"0" * 5_000_000)  # ~5 KB on the wire

    async def gzip_bomb(request: web.Request) -> web.Response:
        return web.Response(body=bomb, headers={"Content-Encoding": "gzip"})

    async def gzipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(b'{"ok": true}'),
                            headers={"Content-Encoding": "gzip"})

    async def endless_header(request: web.Request) -> web.Response:
        # A header that never ends (8 MiB here, then the connection closes).
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
        for _ in range(128):
            transport.write(b"a" * 65536)
            await asyncio.sleep(0)
        transport.close()
        return web.Response()

    async def close_delimited(request: web.Request) -> web.Response:
        # HTTP/1.0 style: no length, the body ends when the connection closes.
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
                        b'{"ok": true}')
        transport.close()
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/gzip-bomb", gzip_bomb)
    app.router.add_route("*", "/gzip", gzipped)
    app.router.add_route("*", "/close-delimited", close_delimited)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/reset", reset)
    app.router.add_route("*", "/hang", hang)
    app.router.add_route("*", "/big", big)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/garbage", garbage)
    app.router.add_route("*", "/endless-header", endless_header)
    app.router.add_route("*", "/slow-stream", slow_stream)
    app.router.add_route("*", "/after-done", after_done)
    app.router.add_route("GET", "/trickle/", trickle)
    app.router.add_route("GET", "/trickle/v1/models", trickle)
    return app


async def main(args: argparse.Namespace) -> None:
    if args.mode == "truth":
        srv = await truth_server(args.seed)
        print(f"LISTENING http://127.0.0.1:{srv.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.Event().wait()
    if args.mode == "delay":
        app = delay_app(args.seed)
    elif args.mode == "stall":
        app = stall_app(args.stall_at, args.stall)
    elif args.mode == "record":
        app = record_app()
    elif args.mode == "serial":
        app = serial_app(args.hold)
    elif args.mode == "openai":
        app = openai_app(args.models.split(","), args.key, args.refuse_after,
                         args.protect_models, args.close_on_refusal, args.limited_for)
    else:
        app = faults_app()
    await serve_app(app)


async def serve_app(app: web.Application) -> None:
    """Serve `app` on an ephemeral loopback port, print `LISTENING URL`, run on."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = cast(asyncio.Server, site._server)  # started: a listening server (uvloop's too)
    port = server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["delay", "truth", "stall", "record", "openai", "serial",
                                    "faults"])
    p.add_argument("--hold", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall-at", type=float, default=3.0)
    p.add_argument("--stall", type=float, default=1.0)
    p.add_argument("--models", default="served-model")
    p.add_argument("--key")
    p.add_argument("--refuse-after", type=float)
    p.add_argument("--protect-models", action="store_true")
    p.add_argument("--close-on-refusal", action="store_true")
    p.add_argument("--limited-for", type=float)
    try:
        import uvloop
        uvloop.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
