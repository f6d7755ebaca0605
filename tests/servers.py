"""Test servers whose behaviour (and so the right answer) we control.

Run as a separate process (`python tests/servers.py MODE`) so their CPU is
off the generator's event loop, like a real target. Prints
`LISTENING http://127.0.0.1:PORT` when bound. Modes:

- delay:    each request sleeps a seeded random delay (mostly 5-60 ms, 3% at
            250-400 ms) and logs its own handling time of every POST; GET
            /truth returns them in ms (the server-side truth).
- stall:    answers in 2 ms, except that the first request arriving after
            `--stall-at` seconds (from the first request) holds the server for
            `--stall` seconds, during which every request waits (one worker,
            like a stop-the-world GC pause).
- record:   answers every POST at once like a non-streaming OpenAI server
            (`usage` from the request's max_tokens) and logs (arrival time on
            CLOCK_MONOTONIC, body); GET /log returns the log.
- faults:   one path per failure: /ok, /status/NNN, /reset (closes the socket
            mid-response), /hang, /garbage (not HTTP), /big (a huge body),
            /redirect, /slow-stream (SSE that stops sending).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import time

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


def stall_app(stall_at: float, stall: float) -> web.Application:
    lock = asyncio.Lock()
    state = {"first": None, "stalled": False}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        now = time.monotonic()
        if state["first"] is None:
            state["first"] = now
        async with lock:  # one worker: a stall holds everyone behind it
            if not state["stalled"] and now - state["first"] >= stall_at:
                state["stalled"] = True
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

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/log", get_log)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def faults_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="nope <b>bold</b>")

    async def reset(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "1000"})
        await resp.prepare(request)
        await resp.write(b"x" * 10)
        request.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        request.transport.close()
        return resp

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response()

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5_000_000)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ok")

    async def garbage(request: web.Request) -> web.Response:
        request.transport.write(b"NOT HTTP AT ALL\r\n\r\n")
        request.transport.close()
        return web.Response()

    async def slow_stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n')
        await asyncio.sleep(3600)
        return resp

    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/reset", reset)
    app.router.add_route("*", "/hang", hang)
    app.router.add_route("*", "/big", big)
    app.router.add_route("*", "/redirect", redirect)
    app.router.add_route("*", "/garbage", garbage)
    app.router.add_route("*", "/slow-stream", slow_stream)
    return app


async def main(args: argparse.Namespace) -> None:
    if args.mode == "delay":
        app = delay_app(args.seed)
    elif args.mode == "stall":
        app = stall_app(args.stall_at, args.stall)
    elif args.mode == "record":
        app = record_app()
    else:
        app = faults_app()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(f"LISTENING http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["delay", "stall", "record", "faults"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stall-at", type=float, default=3.0)
    p.add_argument("--stall", type=float, default=1.0)
    try:
        import uvloop
        uvloop.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
