"""A day-long run folder, generated rather than run (this module holds no
tests): the journal and hlog of a real short run, its one full interval
repeated for every second of `hours`, as a run killed just before its end
would leave them. Each interval holds the same histograms, so the whole
run's percentiles are that interval's: what a rebuild must give back.

    python tests/support/long_run.py TEMPLATE_DIR OUT_DIR HOURS   (bench/bench_long_run.py)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

JOURNAL, HLOG = "journal.jsonl", "latency.hlog"


def template_interval(template: Path) -> tuple[dict[str, Any], dict[str, Any], list[str],
                                               dict[str, Any]]:
    """(header, the second interval's record, its hlog lines, the telemetry
    series' descriptions from the first interval)."""
    lines = [json.loads(x) for x in (template / JOURNAL).read_text().splitlines()]
    header = lines[0]
    intervals = [x for x in lines if x["t"] == "interval"]
    if len(intervals) < 2:
        raise ValueError(f"{template} has fewer than 2 intervals")
    first, record = intervals[0], intervals[1]
    start = record["iv"]["start_s"]
    hlog = [x for x in (template / HLOG).read_text().splitlines()
            if x.startswith("Tag=") and abs(float(x.split(",")[1]) - start) < 5e-4]
    assert len(hlog) == record["series"], (len(hlog), record["series"])
    return header, record, hlog, first.get("telemetry", {}).get("new", {})


def write_long_run(template: Path, out: Path, hours: float, telemetry_series: int = 4) -> int:
    """The folder `out` as a run of `hours` at 1-s intervals killed before
    its end (no run.json, no end line); the number of intervals written."""
    header, record, hlog, described = template_interval(template)
    n = round(hours * 3600)
    header = {**header, "planned_s": float(n + 1), "pid": _dead_pid(),
              "phases": [{**header["phases"][-1], "start_s": 0.0, "duration_s": float(n + 1)}]}
    header["workload"] = {**header["workload"], "duration_s": float(n + 1)}
    kept = dict(list(described.items())[:telemetry_series])
    tele_values = {int(i): v for i, pts in record.get("telemetry", {}).get("points", [])
                   for _t, v in pts[:1] if str(i) in kept}
    base = {k: v for k, v in record.items() if k not in ("telemetry", "n", "wall", "iv")}
    iv, wall = record["iv"], record["wall"]
    width = iv["end_s"] - iv["start_s"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / JOURNAL, "w") as j, open(out / HLOG, "w") as h:
        j.write(json.dumps(header, separators=(",", ":")) + "\n")
        h.write("#[Histogram log format version 1.2]\n#[StartTime: 0 (seconds since epoch)]\n"
                '"StartTimestamp","Interval_Length","Interval_Max",'
                '"Interval_Compressed_Histogram"\n')
        parts = [x.split(",", 2) for x in hlog]  # Tag=..., start, rest
        for k in range(n):
            start = float(k)
            for tag, _start, rest in parts:
                h.write(f"{tag},{start:.6f},{rest}\n")
            telemetry: dict[str, Any] = {"points": [[i, [[start + 0.5, v]]]
                                                    for i, v in tele_values.items()]}
            if k == 0:
                telemetry["new"] = kept
            line = {"t": "interval", "n": k + 1, "wall": wall + k,
                    "iv": {**iv, "start_s": start, "end_s": start + width},
                    **base, "telemetry": telemetry}
            j.write(json.dumps(line, separators=(",", ":")) + "\n")
    return n


def _dead_pid() -> int:
    """A pid no process has now: the run that wrote the journal is over."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


if __name__ == "__main__":
    print(write_long_run(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
