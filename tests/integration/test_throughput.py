"""Throughput is what the server delivered in the measured time: the
requests that ended in it, counted against the server's own log of when it
finished each one (tests/servers.py `serial`, one seat). An overloaded
server's throughput is its capacity, not the load offered, though every
measured request is answered in the drain."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.run import RunWorkload, StartServer
from support.truth import fetch

HOLD_S, RATE, WARMUP_S, DURATION_S = 0.05, 40, 0.5, 2.0


def hlog_start(out: Path) -> float:
    """The run's zero on the wall clock, as latency.hlog states it (ms)."""
    for line in (out / "latency.hlog").read_text().splitlines():
        if line.startswith("#[StartTime: "):
            return float(line.split()[1])
    raise AssertionError("latency.hlog states no StartTime")


@pytest.mark.slow
def test_an_overloaded_server_delivers_its_capacity_not_the_load(server: StartServer,
                                                                  run: RunWorkload) -> None:
    """40 req/s against one seat held 50 ms (20 req/s at most): the requests
    that ended in the measured 2 s are the server's own count of those it
    finished in them, within one at each edge (the answer reaches loadkit a
    fraction of a millisecond after the server logs it)."""
    spec = {"name": "overload", "seed": 5, "warmup": f"{WARMUP_S}s", "duration": f"{DURATION_S}s",
            "arrival": {"process": "constant", "rate": RATE},
            "scenarios": [{"name": "echo", "kind": "http", "method": "POST", "path": "/echo",
                           "body": {"x": 1}}]}
    with server("serial", "--hold", str(HOLD_S)) as url:
        result, out = run({**spec, "target": url}, probe=False)
        ends = fetch(url + "/served")
    start = hlog_start(out) + WARMUP_S
    truth = sum(start <= t < start + DURATION_S for t in ends)
    counts = result["counts"]
    assert counts["errors"] == 0 and counts["completed"] == RATE * DURATION_S  # drained
    served = result["throughput"]["requests_per_s"] * DURATION_S
    assert abs(served - truth) <= 2, (served, truth)
    assert truth <= DURATION_S / HOLD_S + 1  # the seat's capacity: 40 in 2 s, not 80
