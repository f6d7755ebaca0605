#!/usr/bin/env python3
"""loadkit --workers N against one process, and against Locust's distributed mode.

    python bench/bench_distributed.py [--quick] [--reps 2] [--workers 2] [--sim-cpu 1]

Everything runs on 127.0.0.1 against one simulator (``python -m loadkit.sim``)
started by this script, in the same run, with the helpers of ``bench/bench.py``:

1. Request rate (non-streaming chat, 1 output token, simulator with no
   delays): loadkit's maximum sustained open-loop rate in one process and
   with ``--workers N`` (a local master plus N worker processes, one merged
   run.json), each found by bench.py's log-scale bisection, where
   "sustained" = achieved >= 97% of the asked rate, lateness p99 <= 5 ms
   and no errors. Repetitions are interleaved (the order of single and
   --workers alternates from one repetition to the next).
2. Locust's own distributed mode on the same simulator, in each repetition:
   ``locust --master --expect-workers N --headless`` plus N
   ``locust --worker`` processes running ``bench/locustfile.py``'s
   FastHttpUser, closed loop, at each of --users; its rate is the mean of
   the per-second request counts the master merged from its workers
   (``--json-file``: ``num_reqs_per_sec``), over the full seconds after the
   warm-up, best user count kept.
3. Token events (streaming, 100 tokens per request, the simulator at a fixed
   gap of --itl-ms with no jitter): the maximum sustained token-event rate
   (run.json ``throughput.output_tokens_per_s``) in one process and with
   ``--workers N``, bisecting on the request rate; sustained as above
   (every step prints loadkit's ITL p50/p99 too). --itl-check adds
   bench.py's accuracy bound, ITL p50 within 0.5 ms and p99 within 2 ms of
   the server's gap; it is off by default because on a 2-core machine the
   simulator shares its core and its own gaps wander by more than that.

Prints every step, then the medians and the ratios: loadkit --workers N /
one process (request rate and token events; the bar is 1.7x for N = 2) and
loadkit --workers N open-loop rate / Locust distributed closed-loop rate
(the bar is 1.0).

Pinning (Linux ``taskset``): the simulator on --sim-cpu (default the last
CPU; ``none`` leaves it unpinned), every generator (loadkit in one process,
loadkit's master and workers, Locust's master and workers) on --gen-cpus
(default all CPUs), the same set for one process and for N, so the ratios
change only the process count. On a 2-core machine the simulator shares a
core with the generators: it is one asyncio process and may be the limit of
all of them; the summary says where it is pinned.

--quick: one repetition, 3-s runs, 5 bisection steps, two Locust user
counts (a few minutes). Every subprocess is bounded by a timeout, and
everything this script starts is stopped when it ends, however it ends.
Exits 0 when every bar is met, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

ROOT = bench.ROOT
LOCUSTFILE = ROOT / "bench" / "locustfile.py"
STREAM = {"name": "stream", "kind": "openai-chat", "stream": True,
          "max_tokens": bench.TOKENS, "prompt_tokens": 8}
LOCUST_JOIN_S = 30  # how long Locust's master waits for its workers


def on(cpus: str | None, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *cmd] if cpus and bench.PIN else cmd


def start_sim(cpu: str | None, *flags: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(on(cpu, [sys.executable, "-m", "loadkit.sim", "--host", "127.0.0.1",
                                     "--port", "0", *flags]),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("LOADKIT_SIM_LISTENING "):
        bench.stop(proc)
        raise SystemExit(f"simulator did not start: {line!r}")
    return proc, line.split()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DistBench(bench.Bench):
    """bench.Bench whose loadkit runs take --workers and the generators' CPU set."""

    def __init__(self, seconds: float, warmup: float, tmp: Path, cpus: str | None) -> None:
        super().__init__(seconds, warmup, tmp)
        self.cpus = cpus

    workers = 0  # > 0: the runs take `--workers N`

    def command(self, workload: Path, out: Path) -> list[str]:
        cmd = [sys.executable, "-m", "loadkit", "run", str(workload), "--out", str(out), "-q",
               "--allow-saturated"]
        if self.workers:
            # loadkit stops its own workers when it ends; a timeout kills only the
            # master, whose workers see the control channel close and stop.
            cmd += ["--workers", str(self.workers), "--worker-timeout", "30s"]
        return on(self.cpus, cmd)

    def loadkit(self, url: str, rate: float, scenario: dict, connections: int,
                workers: int = 0) -> dict | None:
        """run.json of one open-loop run (workers > 0: `--workers N`), or None."""
        self.workers = workers
        return super().loadkit(url, rate, scenario, connections)

    def locust_distributed(self, url: str, users: int, workers: int) -> dict:
        """Locust master + `workers` workers, closed loop, `users` users; its steady
        req/s from the per-second counts the master merged."""
        self.n += 1
        port, prefix = free_port(), self.tmp / f"locust{self.n}"
        run_s = math.ceil(self.warmup) + math.ceil(self.seconds) + 2
        base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "WARNING"]
        master_cmd = [*base, "--headless", "--master", "--master-bind-host", "127.0.0.1",
                      "--master-bind-port", str(port), "--expect-workers", str(workers),
                      "--expect-workers-max-wait", str(LOCUST_JOIN_S), "-u", str(users),
                      "-r", str(users), "-t", f"{run_s}s", "--host", url, "--only-summary",
                      "--json-file", str(prefix)]
        worker_cmd = [*base, "--worker", "--master-host", "127.0.0.1", "--master-port",
                      str(port)]
        procs: list[subprocess.Popen] = []
        log = (self.tmp / f"locust{self.n}.log").open("w")
        try:
            procs.append(subprocess.Popen(on(self.cpus, master_cmd), stdout=subprocess.DEVNULL,
                                          stderr=log, stdin=subprocess.DEVNULL))
            for _ in range(workers):
                procs.append(subprocess.Popen(on(self.cpus, worker_cmd),
                                              stdout=subprocess.DEVNULL, stderr=log,
                                              stdin=subprocess.DEVNULL))
            with contextlib.suppress(subprocess.TimeoutExpired):
                procs[0].wait(timeout=run_s + LOCUST_JOIN_S + 30)
            for p in procs[1:]:  # the master's quit stops them; else stop() below
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=10)
        finally:
            for p in procs:
                if p.poll() is None:
                    bench.stop(p)
            log.close()
        try:
            entries = json.loads(Path(f"{prefix}.json").read_text())
        except (OSError, ValueError):
            tail = (self.tmp / f"locust{self.n}.log").read_text()[-500:]
            raise RuntimeError(f"Locust's master wrote no stats: {tail}") from None
        per_s: dict[int, int] = {}
        failures, times = 0, dict[float, int]()
        for e in entries:
            failures += e["num_failures"]
            for t, n in e["num_reqs_per_sec"].items():
                per_s[int(t)] = per_s.get(int(t), 0) + n
            for ms, n in e["response_times"].items():
                times[float(ms)] = times.get(float(ms), 0) + n
        if not per_s:
            raise RuntimeError("Locust counted no requests")
        # Full seconds only: not the first (partial, then the warm-up), not the last.
        first = min(per_s) + 1 + math.ceil(self.warmup)
        window = range(first, max(per_s))
        counts = [per_s.get(t, 0) for t in window] or [0]
        return {"requests_per_s": statistics.fmean(counts), "window_s": len(window),
                "failures": failures, "median_ms": weighted_median(times), "users": users}


def weighted_median(hist: dict[float, int]) -> float:
    total, seen = sum(hist.values()), 0
    for value in sorted(hist):
        seen += hist[value]
        if 2 * seen >= total:
            return value
    return float("nan")


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ratio(a: list[float], b: list[float]) -> float:
    return med(a) / med(b) if a and b and med(b) > 0 else float("nan")


def runs(xs: list[float]) -> str:
    return "[" + ", ".join(f"{x:,.0f}" for x in xs) + "]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="one repetition, 3-s runs, 5 bisection steps, users 100,200")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=1.5)
    ap.add_argument("--steps", type=int, default=6, help="bisection steps per search")
    ap.add_argument("--lo", type=float, default=3000, help="bisection's lower bound (req/s)")
    ap.add_argument("--hi", type=float, default=20000,
                    help="bisection's upper bound (req/s), one process; x workers for N")
    ap.add_argument("--users", default="50,100,200", help="Locust user counts searched")
    ap.add_argument("--itl-ms", type=float, default=5.0)
    ap.add_argument("--itl-check", action="store_true",
                    help="streaming also needs |ITL p50 - gap| <= 0.5 ms, |p99 - gap| <= 2 ms")
    ap.add_argument("--sim-cpu", default=None,
                    help="CPU list the simulator is pinned to (default: the last CPU; "
                         "'none': unpinned)")
    ap.add_argument("--gen-cpus", default=None,
                    help="CPU list every generator is pinned to (default: all CPUs)")
    args = ap.parse_args()
    if args.quick:
        args.reps, args.seconds, args.warmup, args.steps = 1, 3.0, 1.0, 5
        args.users = "100,200"
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else list(range(os.cpu_count() or 1))
    sim_cpu = None if args.sim_cpu == "none" else args.sim_cpu or str(cpus[-1])
    gen_cpus = args.gen_cpus or ",".join(map(str, cpus))
    users = [int(u) for u in args.users.split(",")]
    n, gap = args.workers, args.itl_ms
    t_start = time.monotonic()
    if bench.PIN:
        print(f"pinning: simulator on CPU {sim_cpu or '(unpinned)'}; generators (loadkit one "
              f"process, loadkit --workers {n}, Locust master + {n} workers) on CPUs "
              f"{gen_cpus}; {len(cpus)} CPUs in all", flush=True)
    else:
        print("note: taskset not found; processes are not pinned to cores", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="loadkit-bench-dist-"))
    b = DistBench(args.seconds, args.warmup, tmp, gen_cpus)
    crit = (f"sustained = achieved >= {bench.MIN_ACHIEVED:.0%}, lateness p99 <= "
            f"{bench.MAX_LATENESS_MS:g} ms, no errors")
    one_req: list[float] = []
    n_req: list[float] = []
    one_tok: list[float] = []
    n_tok: list[float] = []
    lc_req: list[float] = []
    try:
        sim, url = start_sim(sim_cpu, "--ttft-ms", "0", "--itl-ms", "0")
        try:
            for rep in range(args.reps):
                order = (0, n) if rep % 2 == 0 else (n, 0)
                for w in order:
                    label = f"workers={w}" if w else "one process"
                    print(f"rep {rep + 1}/{args.reps}: loadkit {label}, request rate, "
                          f"bisection ({crit})", flush=True)

                    def try_chat(rate: float, w: int = w):
                        r = b.loadkit(url, rate, bench.CHAT, 100, workers=w)
                        return bench.ok_run(r, rate), r

                    hi = args.hi * max(w, 1)
                    rate, r = bench.bisect(args.lo, hi, args.steps, 250, try_chat,
                                           f"{label} req/s")
                    print(f"  -> {label}: max sustained {rate:,.0f} req/s"
                          if r is not None else f"  -> {label}: not even the lowest rate",
                          flush=True)
                    (n_req if w else one_req).append(rate)
                print(f"rep {rep + 1}/{args.reps}: Locust distributed (master + {n} workers), "
                      f"FastHttpUser closed loop, users {args.users}", flush=True)
                best = None
                for u in users:
                    try:
                        lr = b.locust_distributed(url, u, n)
                    except (RuntimeError, OSError) as exc:
                        print(f"  locust {u:>4} users: no result ({exc})", flush=True)
                        continue
                    print(f"  locust {u:>4} users: {lr['requests_per_s']:,.0f} req/s over "
                          f"{lr['window_s']} s, median {lr['median_ms']:.0f} ms, failures "
                          f"{lr['failures']}", flush=True)
                    if best is None or lr["requests_per_s"] > best["requests_per_s"]:
                        best = lr
                if best is not None:
                    lc_req.append(best["requests_per_s"])
                    print(f"  -> locust distributed best {best['requests_per_s']:,.0f} req/s "
                          f"at {best['users']} users", flush=True)
        finally:
            bench.stop(sim)

        sim, url = start_sim(sim_cpu, "--ttft-ms", "0", "--itl-ms", f"{gap:g}")
        try:
            for rep in range(args.reps):
                order = (0, n) if rep % 2 == 0 else (n, 0)
                for w in order:
                    label = f"workers={w}" if w else "one process"
                    itl_crit = (f", |ITL p50 - {gap:g}| <= 0.5 ms, |ITL p99 - {gap:g}| <= 2 ms"
                                if args.itl_check else "")
                    print(f"rep {rep + 1}/{args.reps}: loadkit {label}, streaming "
                          f"{bench.TOKENS} tokens at a {gap:g}-ms gap ({crit}{itl_crit})",
                          flush=True)

                    def try_stream(rate: float, w: int = w):
                        # Streams last ~TOKENS x gap: connections for all of them at once.
                        conns = int(rate * bench.TOKENS * gap / 1000 * 1.5) + 50
                        r = b.loadkit(url, rate, STREAM, conns, workers=w)
                        if r is None or not bench.ok_run(r, rate):
                            return False, r
                        if not args.itl_check:
                            return True, r
                        itl = r["series"]["itl"]["all"]
                        return abs(itl["p50"] - gap) <= 0.5 and abs(itl["p99"] - gap) <= 2.0, r

                    rate, r = bench.bisect(10, 1200 * max(w, 1), args.steps + 1, 5, try_stream,
                                           f"{label} stream req/s")
                    events = 0.0
                    if r is not None:
                        events = r["throughput"].get("output_tokens_per_s") or \
                            r["throughput"]["requests_per_s"] * bench.TOKENS
                        print(f"  -> {label}: max sustained {rate:,.0f} req/s = {events:,.0f} "
                              f"token events/s", flush=True)
                    else:
                        print(f"  -> {label}: not even the lowest rate", flush=True)
                    (n_tok if w else one_tok).append(events)
        finally:
            bench.stop(sim)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.monotonic() - t_start

    rr, tr, lr_ = ratio(n_req, one_req), ratio(n_tok, one_tok), ratio(n_req, lc_req)
    bar = 1.7 if n == 2 else 0.85 * n
    print()
    print(f"SUMMARY ({'quick, ' if args.quick else ''}{args.reps} rep(s) interleaved, "
          f"{args.seconds:g}-s runs; simulator on CPU {sim_cpu or '(unpinned)'}, generators "
          f"on CPUs {gen_cpus}{'' if bench.PIN else ' (taskset missing: unpinned)'}; "
          f"{elapsed:.0f} s)")
    print(f"{'':36}{'one process':>14}{f'--workers {n}':>14}{'ratio':>8}{'bar':>7}")
    print(f"{'max sustained req/s (median)':36}{med(one_req):>14,.0f}{med(n_req):>14,.0f}"
          f"{rr:>8.2f}{bar:>7.2f}")
    print(f"{'max sustained token events/s':36}{med(one_tok):>14,.0f}{med(n_tok):>14,.0f}"
          f"{tr:>8.2f}{bar:>7.2f}")
    print(f"{'':36}{f'locust x{n}':>14}{f'--workers {n}':>14}{'ratio':>8}{'bar':>7}")
    print(f"{'req/s: closed loop vs open loop':36}{med(lc_req):>14,.0f}{med(n_req):>14,.0f}"
          f"{lr_:>8.2f}{1.0:>7.2f}")
    print(f"  runs: one process req/s {runs(one_req)}, --workers {n} {runs(n_req)}, locust "
          f"distributed {runs(lc_req)}; token events/s one process {runs(one_tok)}, "
          f"--workers {n} {runs(n_tok)}")
    print(f"  ratio --workers {n} / one process: request rate {rr:.2f}x, token events "
          f"{tr:.2f}x; loadkit --workers {n} open loop / Locust distributed closed loop: "
          f"{lr_:.2f}x")
    met = rr >= bar and tr >= bar and lr_ >= 1.0
    print(f"  bars {'met' if met else 'NOT met'} (every ratio is measured in this run, on "
          f"these cores, against this one simulator)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
