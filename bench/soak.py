#!/usr/bin/env python3
"""A long soak of the generator itself: memory over run length, report cost.

    python bench/soak.py [--duration 30m] [--rate 100] [--interval 1s] [--sample 5s]
                      [--workload FILE] [--time-scale F] [--out DIR]

Runs ``loadkit run`` (the real CLI, in its own process) on streaming chat
against the embedded simulator: by default 30 minutes at 100 req/s, Poisson,
256 prompt tokens, 64 output tokens (TTFT 40 ms, ITL 8 ms: ~50 requests and
~6,400 token events a second in flight), 1-s intervals, SLOs with windows.
``--workload FILE`` runs a file of your own instead (with ``--time-scale``, a
simulated day: ``--workload workloads/diurnal.yaml --time-scale 0.1``), and
``--duration``/``--rate`` shorten or lighten it (``--duration 2m --rate 20``).

Every ``--sample`` seconds it reads the generator's resident memory from
/proc/PID/status (VmRSS; the simulator is a separate process and is not
counted) and scrapes the run's live metrics (``--metrics-port``), whose
``loadkit_run_elapsed_seconds`` places each sample on the run's own clock
(``--no-metrics``: without the exporter, to compare; the clock then comes
from the progress lines).
At the end it prints RSS at 5 minutes of run time, at 30 and 60 when reached,
at the end of the load and at its peak (VmHWM: report building included),
the growth from 5 minutes to the end (MB/h), the exporter's cost per interval,
the time from the verdict to the process's exit (writing the reports), and
the time ``loadkit report`` takes to rebuild them from run.json in a fresh
process, with the size of each output. Everything sampled goes to
``OUT/soak.json``. Exit status: loadkit's.

Linux only (/proc). The machine's other load shows in the figures: say so
when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadkit.workload.units import parse_duration  # noqa: E402 - after the path

MILESTONES_S = (300.0, 1800.0, 3600.0)


def soak_workload(rate: float, interval: float) -> dict:
    return {
        "name": "soak-stream", "seed": 12, "warmup": "10s", "duration": "30m",
        "interval": f"{interval:g}s",
        "arrival": {"process": "poisson", "rate": rate},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 256, "max_tokens": 64}],
        "simulator": {"ttft_ms": 40, "itl_ms": 8},
        "slos": ["ttft p99 < 500ms", "itl p99 < 50ms", "error_rate < 1%",
                 "latency p99 < 2s in every 60s window"],
    }


def rss_kib(pid: int) -> tuple[int | None, int | None]:
    """(VmRSS, VmHWM) in KiB from /proc/PID/status; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    found = {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}
    return found.get("VmRSS"), found.get("VmHWM")


def scrape(url: str) -> dict[str, float]:
    """The few unlabelled gauges this script reads, and the request total."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {"requests": 0.0}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, rest = line.partition(" ")
        if name.startswith("loadkit_requests_total{"):
            out["requests"] += float(rest.split()[0])
        elif "{" not in name:
            out[name] = float(rest.split()[0])
    return out


def mb(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.0f} MB"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", help="measured duration (built-in workload: 30m)")
    ap.add_argument("--rate", type=float, help="req/s (built-in workload: 100)")
    ap.add_argument("--interval", default="1s", help="histogram interval (default 1s)")
    ap.add_argument("--sample", default="5s", help="RSS sampling period (default 5s)")
    ap.add_argument("--workload", type=Path, help="run this file instead of the built-in one")
    ap.add_argument("--time-scale", help="passed to loadkit run (a simulated day: 0.1)")
    ap.add_argument("--out", type=Path, default=None, help="default reports/soak-<time>/")
    ap.add_argument("--no-metrics", action="store_true",
                    help="run without --metrics-port (to compare): the run's clock is read "
                         "from its progress lines instead")
    args = ap.parse_args()
    sample_s = parse_duration(args.sample)
    out = args.out or ROOT / "reports" / time.strftime("soak-%Y%m%dT%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    if args.workload:
        workload = args.workload
    else:
        import yaml
        workload = out / "soak-workload.yaml"
        spec = soak_workload(args.rate or 100.0, parse_duration(args.interval))
        workload.write_text(yaml.safe_dump(spec, sort_keys=False))
    cmd = [sys.executable, "-m", "loadkit", "run", str(workload), "--out", str(out / "run")]
    cmd += [] if args.no_metrics else ["-q", "--metrics-port", "0"]
    if args.duration:
        cmd += ["--duration", args.duration]
    if args.workload and args.rate:
        cmd += ["--rate", f"{args.rate:g}"]
    if args.time_scale:
        cmd += ["--time-scale", args.time_scale]
    print("soak:", " ".join(cmd), flush=True)
    launched = time.monotonic()
    log = open(out / "loadkit.log", "w")  # noqa: SIM115 - closed at the end
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.PIPE, text=True)
    url: list[str] = []
    progress: dict[str, float] = {}  # --no-metrics: the last progress line's clock

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if not url and (m := re.search(r"live metrics at (http://\S+/metrics)", line)):
                url.append(m.group(1))
            elif m := re.match(r"\s*(\d+)/(\d+) s ", line):
                progress.update(elapsed=float(m.group(1)), total=float(m.group(2)),
                                seen=time.monotonic())

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    samples: list[dict] = []
    verdict_at: float | None = None
    planned = None
    next_print = 60.0
    while proc.poll() is None:
        rss, hwm = rss_kib(proc.pid)
        row: dict = {"t_s": round(time.monotonic() - launched, 2), "rss_kib": rss, "hwm_kib": hwm}
        if url:
            try:
                figures = scrape(url[0])
            except OSError:
                figures = {}
            row.update(elapsed_s=figures.get("loadkit_run_elapsed_seconds"),
                       finished=figures.get("loadkit_run_finished"),
                       requests=figures.get("requests"),
                       update_s=figures.get("loadkit_exporter_update_seconds"),
                       update_max_s=figures.get("loadkit_exporter_update_max_seconds"))
            planned = figures.get("loadkit_run_planned_seconds", planned)
            if row["finished"] == 1 and verdict_at is None:
                verdict_at = time.monotonic()
        elif progress:  # printed every 5 s: extrapolated, to within the start-up
            elapsed = progress["elapsed"] + time.monotonic() - progress["seen"]
            planned = progress["total"]
            row.update(elapsed_s=min(elapsed, planned),
                       finished=float(elapsed >= planned))
        if rss is not None:
            samples.append(row)
            if row.get("finished") == 0 and (row.get("elapsed_s") or 0) >= next_print:
                print(f"soak: {row['elapsed_s']:.0f} s of run, RSS {mb(rss)}", flush=True)
                next_print += 60.0
        # Poll quickly from near the end to the exit: the verdict's time, and the
        # high-water mark after the reports (VmHWM only grows; a sample after the
        # peak has it).
        near_end = planned is not None and (row.get("elapsed_s") or 0) >= planned - 2 * sample_s
        deadline = time.monotonic() + (0.1 if near_end else sample_s)
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    exited = time.monotonic()
    code = proc.returncode
    reader.join(timeout=10)
    log.close()

    running = [s for s in samples if s.get("elapsed_s") is not None and s.get("finished") == 0]
    print(f"\nsoak: loadkit exited {code} after {exited - launched:.0f} s "
          f"(log: {out / 'loadkit.log'})")
    print("RSS of the generator (VmRSS, /proc; the simulator not counted):")
    for mark in MILESTONES_S:
        at = next((s for s in running if s["elapsed_s"] >= mark), None)
        if at:
            print(f"  at {mark / 60:>4.0f} min of run   {mb(at['rss_kib'])}")
    if running:
        last = running[-1]
        print(f"  end of load ({last['elapsed_s']:.0f} s)  {mb(last['rss_kib'])}")
        for since in (60.0, 300.0):  # past start-up; past the first minutes
            first = next((s for s in running if s["elapsed_s"] >= since), None)
            if first and last["elapsed_s"] >= first["elapsed_s"] + max(60.0, since):
                slope = ((last["rss_kib"] - first["rss_kib"]) / 1024
                         / ((last["elapsed_s"] - first["elapsed_s"]) / 3600))
                print(f"  growth from {since / 60:.0f} min to the end: {slope:+.1f} MB/h")
        costs = [s["update_s"] for s in running if s.get("update_s") is not None]
        if costs:
            costs.sort()
            print(f"  exporter cost per interval: median {costs[len(costs) // 2] * 1e6:.0f} µs, "
                  f"worst {max(s.get('update_max_s') or 0 for s in running) * 1e6:.0f} µs "
                  f"(sampled every {sample_s:g} s)")
    peak = max((s["hwm_kib"] for s in samples if s.get("hwm_kib")), default=None)
    print(f"  peak (VmHWM, reports included)  {mb(peak)}")
    if verdict_at is not None:
        print(f"verdict to exit (reports written by the run): {exited - verdict_at:.1f} s")
    run_dir = out / "run"
    report_s = None
    if (run_dir / "run.json").exists():
        t0 = time.monotonic()
        rebuilt = subprocess.run([sys.executable, "-m", "loadkit", "report", str(run_dir)],
                                 cwd=ROOT, capture_output=True, text=True, check=False)
        report_s = time.monotonic() - t0
        print(f"loadkit report (fresh process, imports included): {report_s:.1f} s, "
              f"exit {rebuilt.returncode}")
        for name in ("report.html", "run.json", "latency.hlog", "summary.md", "junit.xml"):
            path = run_dir / name
            if path.exists():
                print(f"  {name:<14} {path.stat().st_size / 1e6:8.2f} MB")
    (out / "soak.json").write_text(json.dumps({
        "command": cmd, "exit": code, "samples": samples, "report_s": report_s,
        "verdict_to_exit_s": None if verdict_at is None else exited - verdict_at,
        "cpus": os.cpu_count()}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
