#!/usr/bin/env python3
"""Locust FastHttpUser's closed-loop throughput and CPU per request, for bench/bench.py.

    python bench/bench_locust.py URL USERS SECONDS [WARMUP]

Runs ``bench/locustfile.py``'s user as a library (the same engine as the
``locust`` command, without the web UI), lets USERS users run WARMUP seconds,
then measures SECONDS of steady state: the requests Locust counted and this
process's CPU time (user + system) over exactly that window.  Prints one JSON
line: requests_per_s, cpu_us_per_req, cpu_fraction, failures, median_ms.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import gevent
from locust.env import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locustfile import Chat


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> int:
    url, users, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    warmup = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    env = Environment(user_classes=[Chat], host=url)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=max(users, 1))
    gevent.sleep(warmup)
    total = env.stats.total
    n0, f0, c0, t0 = total.num_requests, total.num_failures, _cpu(), time.monotonic()
    gevent.sleep(seconds)
    n1, f1, c1, t1 = total.num_requests, total.num_failures, _cpu(), time.monotonic()
    median = total.get_current_response_time_percentile(0.5) or 0.0
    runner.quit()
    n, cpu, wall = n1 - n0, c1 - c0, t1 - t0
    print(json.dumps({"requests_per_s": n / wall, "cpu_fraction": cpu / wall,
                      "cpu_us_per_req": 1e6 * cpu / max(n, 1), "failures": f1 - f0,
                      "median_ms": median, "users": users}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
