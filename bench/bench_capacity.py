#!/usr/bin/env python3
"""What probes that stop once decided, and a ramp first, save a capacity search.

    python bench/bench_capacity.py [--probe 20s] [--precision 5%] [--min 200] [--ramp 5s]

Starts the knee server of the capacity tests (tests/knee_server.py: 20
requests in flight at 50 ms each, so its capacity is ~400 req/s by Little's
law; beyond it every request takes the 500-ms slow path) and searches it
three times with the same settings, `latency p99 < 100ms`: once with every
probe run its whole length (`--full-probes`, as before stop_when_decided),
once as `loadkit capacity` runs by default, each probe ending when its SLO
is decided, and once with `--ramp` before those probes. Prints the intervals
and wall times, and their ratios to the first: measured in the same run, so
the machine's speed cancels out.
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
LIMIT, FAST_S, SLOW_S = 20, 0.050, 0.500


def knee_server() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "knee_server.py"),
                             "--limit", str(LIMIT), "--fast", str(FAST_S), "--slow", str(SLOW_S)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("LISTENING "):
        proc.kill()
        raise SystemExit("the knee server did not start")
    return proc, line.split()[1]


def search(workload: Path, out: Path, a: argparse.Namespace, extra: list[str]) -> dict:
    args = [sys.executable, "-m", "loadkit", "capacity", str(workload), "--min", a.min,
            "--max", "800", "--precision", a.precision, "--probe", a.probe, "--out", str(out),
            "-q", *extra]
    t0 = time.monotonic()
    subprocess.run(args, cwd=ROOT, check=False, capture_output=True, text=True)
    wall = time.monotonic() - t0
    found = json.loads((out / "capacity.json").read_text())
    ramp = found.get("ramp")
    return {"wall_s": wall, "passed": found["capacity"]["passed"],
            "failed": found["capacity"]["failed"],
            "probes": [(round(p["value"], 1), p["status"], p["decided_s"])
                       for p in found["probes"]],
            "ramp": f"{len(ramp['steps'])} steps in {ramp['elapsed_s']:.1f} s, failed at "
                    f"{ramp['failed']}" if ramp else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--probe", default="20s")
    parser.add_argument("--precision", default="5%")
    parser.add_argument("--min", default="200")
    parser.add_argument("--ramp", default="5s")
    a = parser.parse_args()
    server, url = knee_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            workload = folder / "knee.yaml"
            workload.write_text(yaml.safe_dump({
                "name": "knee", "seed": 3, "duration": 3, "target": url,
                "arrival": {"process": "constant", "rate": 100}, "client": {"drain": "2s"},
                "scenarios": [{"name": "post", "kind": "http", "method": "POST", "path": "/"}],
                "slos": ["latency p99 < 100ms"]}))
            full = search(workload, folder / "full", a, ["--full-probes"])
            decided = search(workload, folder / "decided", a, [])
            ramped = search(workload, folder / "ramp", a, ["--ramp", a.ramp])
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name, r in (("full probes", full), ("stop when decided", decided),
                    (f"ramp {a.ramp}, then", ramped)):
        ramp = f"; ramp {r['ramp']}" if r["ramp"] else ""
        print(f"{name:>18}: capacity [{r['passed']}, {r['failed']}) req/s in "
              f"{r['wall_s']:.1f} s{ramp}; probes (load, status, decided at s): {r['probes']}")
    print(f"wall time ratio to full probes: stop when decided "
          f"{decided['wall_s'] / full['wall_s']:.2f}, ramp first {ramped['wall_s'] / full['wall_s']:.2f}")


if __name__ == "__main__":
    main()
