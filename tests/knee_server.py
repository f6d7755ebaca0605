"""A server with a hard knee, for the capacity tests (this module holds no tests).

`python tests/knee_server.py [--limit R] [--fast S] [--slow S]` prints
`LISTENING http://127.0.0.1:PORT` when bound. R workers answer a request in
`--fast` seconds; a request that finds all R busy goes to an overflow path
that answers in `--slow` seconds without taking a worker (so one slow answer
cannot cascade). Under evenly spaced arrivals the knee is where the workers
fill, at R / (fast service time) requests per second (Little's law).

GET /stats returns the server's own truth over the POSTs so far: how many
went each way and the mean time a worker held a fast one (ms), from which
the knee is computed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from aiohttp import web

from servers import serve_app  # tests/ is this script's own folder


def knee_app(limit: int, fast_s: float, slow_s: float) -> web.Application:
    state = {"busy": 0, "fast": 0, "slow": 0, "held_s": 0.0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if request.method != "POST":  # loadkit's pre-flight
            return web.json_response({"ok": True})
        if state["busy"] < limit:
            state["busy"] += 1
            t0 = time.monotonic()
            try:
                await asyncio.sleep(fast_s)
            finally:
                state["busy"] -= 1
            state["fast"] += 1
            state["held_s"] += time.monotonic() - t0
        else:
            await asyncio.sleep(slow_s)
            state["slow"] += 1
        return web.json_response({"ok": True})

    async def stats(request: web.Request) -> web.Response:
        fast = state["fast"]
        return web.json_response({"fast": fast, "slow": state["slow"], "limit": limit,
                                  "fast_mean_ms": state["held_s"] / fast * 1000 if fast else None})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def main(args: argparse.Namespace) -> None:
    await serve_app(knee_app(args.limit, args.fast, args.slow))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--fast", type=float, default=0.005)
    p.add_argument("--slow", type=float, default=0.5)
    try:
        import uvloop
        uvloop.run(main(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(0)
