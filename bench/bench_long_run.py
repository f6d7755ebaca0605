#!/usr/bin/env python3
"""What a day-long soak leaves, and what reopening it costs.

    python bench/bench_long_run.py [--hours 24] [--rate 100] [--out DIR]

Runs a real 3-s template (streaming chat at --rate req/s against the
embedded simulator, with its telemetry: 9 histogram series and 30 gauges
an interval), then writes its one full interval for every second of
--hours (tests/support/long_run.py), as a run killed before its end leaves
journal.jsonl and latency.hlog; every telemetry series is kept. Then, each
in a fresh process, with wall time and peak RSS:

1. `loadkit report DIR` rebuilds run.json and the reports from the journal
   and hlog (the kill -9 recovery), streaming both files;
2. `loadkit report DIR` again, now from the bounded run.json.

Prints the size of every file and both rebuilds' figures; the real
30-minute soak's are bench/soak.py's. Linux only (peak RSS from
getrusage): say what else ran on the machine when quoting the figures.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from support.long_run import write_long_run  # noqa: E402  (tests/ holds the generator)

MEASURED = ("import resource, subprocess, sys; "
            "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def measured(*args: str) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MB) of `python -m loadkit ARGS`."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "loadkit",
                           *args], capture_output=True, text=True, cwd=ROOT, check=True)
    rc, kb = done.stdout.split()
    return int(rc), time.monotonic() - t0, int(kb) / 1024


def template(folder: Path, rate: float) -> Path:
    spec = {"name": "soak", "duration": 3, "arrival": {"process": "constant", "rate": rate},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 64}],
            "simulator": {"ttft_ms": 40, "itl_ms": 8},
            "slos": ["latency p99 < 2s", "ttft p99 < 500ms", "error_rate < 1%"]}
    (folder / "w.yaml").write_text(yaml.safe_dump(spec))
    subprocess.run([sys.executable, "-m", "loadkit", "run", str(folder / "w.yaml"), "--out",
                    str(folder / "template"), "--outputs", "json", "--allow-saturated"],
                   cwd=ROOT, check=True, capture_output=True)
    return folder / "template"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--out", type=Path, help="keep the run folder here")
    a = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        run = folder / "run"
        n = write_long_run(template(folder, a.rate), run, a.hours, telemetry_series=1000)
        made = time.monotonic() - t0
        print(f"{a.hours:g} h at {a.rate:g} req/s: {n:,} intervals written in {made:.1f} s")
        for name in ("journal.jsonl", "latency.hlog"):
            print(f"  {name:<14} {(run / name).stat().st_size / 1e6:9.1f} MB")
        for label in ("from the journal and hlog (recovery)", "from run.json"):
            rc, seconds, rss = measured("report", str(run))
            print(f"loadkit report {label}: {seconds:.1f} s, peak RSS {rss:.0f} MB, exit {rc}")
        for name in ("run.json", "report.html", "summary.md", "junit.xml", "telemetry.csv"):
            if (run / name).exists():
                print(f"  {name:<14} {(run / name).stat().st_size / 1e6:9.2f} MB")
    print(f"this process: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB")


if __name__ == "__main__":
    main()
