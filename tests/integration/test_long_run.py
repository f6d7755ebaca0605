"""Day-long soaks: results that stay small and quick to rebuild.

A real 3-s run against the embedded simulator is the template; its one full
interval is repeated for every second of an hour and of a day
(tests/support/long_run.py), as a run killed before its end leaves its
journal and hlog. `loadkit report` rebuilds each (the kill -9 recovery),
streaming both files, and must give back the template interval's own
percentiles and verdicts (every interval holds the same histograms) in a
run.json and report.html of bounded size, in memory that does not grow with
the run, in time proportional to it (the hour measured beside the day, so
the machine's speed cancels out). bench/bench_long_run.py prints the same
figures, with absolute times, for docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from loadkit.errors import ExitCode
from loadkit.record.histogram import HdrHistogram, add_into, decode, merged, percentile_us
from loadkit.record.intervals import TIMESERIES_POINTS
from loadkit.run import recover
from support.long_run import template_interval, write_long_run
from support.run import ROOT, cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

MB = 2**20
# Runs the command and prints its own peak RSS (kB): this child's alone.
MEASURED = ("import resource, subprocess, sys; "
            "rc = subprocess.run(sys.argv[1:], capture_output=True).returncode; "
            "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def rebuild(folder: Path) -> tuple[float, float]:
    """`loadkit report FOLDER` in a child process: (seconds, peak RSS in MB)."""
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", MEASURED, sys.executable, "-m", "loadkit",
                           "report", str(folder)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    seconds = time.monotonic() - t0
    rc, rss_kb = done.stdout.split()
    assert int(rc) == ExitCode.UNTRUSTED, done.stderr  # rebuilt: incomplete, exit 3
    return seconds, int(rss_kb) / 1024


def repeated(h: HdrHistogram, n: int) -> HdrHistogram:
    """n copies of h's samples, by doubling."""
    total, power = merged([]), merged([h])
    while n:
        if n & 1:
            add_into(total, power)
        power, n = merged([power, power]), n >> 1
    return total


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    spec = {"name": "soak", "duration": 3, "arrival": {"process": "constant", "rate": 100},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                           "max_tokens": 16}],
            "simulator": {"ttft_ms": 20, "itl_ms": 2},
            "slos": ["latency p99 < 2s", "error_rate < 1%"]}
    (folder / "w.yaml").write_text(yaml.safe_dump(spec))
    # Its timing is not what the test checks (its histograms are repeated):
    # beside busy workers the generator may fall behind, and the run says so.
    proc = cli("run", str(folder / "w.yaml"), "--out", str(folder / "out"), "--allow-saturated")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return folder / "out"


def test_a_day_rebuilds_small_and_true_in_flat_memory(template: Path, tmp_path: Path) -> None:
    hour, day = tmp_path / "hour", tmp_path / "day"
    assert write_long_run(template, hour, 1) == 3_600
    assert write_long_run(template, day, 24) == 86_400
    hour_s, _ = rebuild(hour)
    day_s, day_rss = rebuild(day)
    sizes = {f: {name: (f / name).stat().st_size for name in ("run.json", "report.html",
                                                             "journal.jsonl", "latency.hlog")}
             for f in (hour, day)}
    print(f"rebuild: an hour {hour_s:.1f} s, a day {day_s:.1f} s, peak RSS {day_rss:.0f} MB; "
          f"sizes {sizes}")

    # Bounded outputs: the day's run.json and page are small, and near the hour's.
    assert sizes[day]["run.json"] < 20 * MB and sizes[day]["report.html"] < 10 * MB
    assert sizes[day]["run.json"] <= 2 * sizes[hour]["run.json"]
    assert sizes[hour]["run.json"] <= 2 * sizes[day]["run.json"]
    assert sizes[day]["journal.jsonl"] > 50 * MB  # ...from append-only files that are not
    # Streamed: memory far below the files' size, time linear in the run's length.
    assert day_rss < 500, day_rss
    assert day_s < 48 * hour_s, (day_s, hour_s)

    # True: the template interval's own figures, over a day of it.
    header, record, hlog, _ = template_interval(template)
    latency = [decode(line.split(",", 4)[4]) for line in hlog if line.startswith("Tag=latency.")]
    assert len(latency) == 1
    # The rank of p99 among n x 86,400 samples can fall one sample off its
    # rank among n (float rounding of 0.99 n): the truth is the day's own.
    expected_p99 = percentile_us(repeated(latency[0], 86_400), 99.0) / 1000.0
    run = json.loads((day / "run.json").read_text())
    assert run["schema_version"] == 2 and run["incomplete"]["intervals"] == 86_400
    assert run["counts"]["completed"] == 86_400 * record["iv"]["completed"]
    assert run["series"]["latency"]["all"]["p99"] == pytest.approx(expected_p99, rel=1e-3)
    template_run = json.loads((template / "run.json").read_text())
    assert {s["name"]: s["verdict"] for s in run["slos"]} == \
        {s["name"]: s["verdict"] for s in template_run["slos"]} == \
        {"latency p99 < 2s [all]": "pass", "error_rate < 1% [all]": "pass"}
    points = run["timeseries"]
    assert len(points) <= TIMESERIES_POINTS and sum(p["intervals"] for p in points) == 86_400
    assert len(run["telemetry"]["per_interval"]) == len(points)

    # The rebuilt folder reopens from its bounded run.json, with the same figures.
    again = cli("report", str(day))
    assert again.returncode == ExitCode.UNTRUSTED, again.stderr
    rerun = json.loads((day / "run.json").read_text())
    assert rerun["series"] == run["series"] and rerun["slos"] == run["slos"]


def test_a_rebuild_read_in_small_chunks_is_the_same_and_says_how_far(
        template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks cut lines and intervals anywhere: reading 4 kB at a time gives
    the same result as one read, and the progress it reports climbs to the
    journal's size."""
    folder = tmp_path / "run"
    write_long_run(template, folder, 0.1)
    whole = recover.rebuild(folder)
    monkeypatch.setattr(recover, "CHUNK", 4096)
    state, seen = recover.Rebuild(folder), list[int]()
    state.update(progress=seen.append)
    chunked = state.result()
    assert state.intervals == 360 and len(seen) > 50
    assert seen == sorted(seen) and seen[-1] == (folder / "journal.jsonl").stat().st_size
    assert chunked.series == whole.series and chunked.counts == whole.counts
    assert chunked.timeseries == whole.timeseries and chunked.slos == whole.slos
