"""Crash-safe results (issue 12, item 2) and the live report, with real
processes: `loadkit run` killed with SIGKILL mid-run, then `loadkit report
DIR` rebuilds run.json and the reports from journal.jsonl + latency.hlog;
a second Ctrl-C exits at once and leaves a folder that rebuilds the same
way; report.html is rewritten while a run goes.

Waits are on events (journal lines, files rewritten), each with a generous
deadline for a slow machine's start-up, never a fixed window."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import yaml

from loadkit.outputs.format import seconds
from loadkit.result import load_run
from loadkit.run.recover import rebuild
from support.run import ROOT, RUN_VALIDATOR, RunWorkload, StartServer, cli

STARTUP_S = 60.0  # a wait for a loaded machine to start a run, not a bound on anything
T = TypeVar("T")


def start(tmp_path: Path, spec: dict, *args: str) -> tuple[subprocess.Popen, Path, Path]:
    """`loadkit run` as a user starts it; (process, out dir, its stderr file)."""
    workload, out, err = tmp_path / "w.yaml", tmp_path / "out", tmp_path / "stderr.txt"
    workload.write_text(yaml.safe_dump(spec, sort_keys=False))
    with open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "loadkit", "run", str(workload),
                                 "--out", str(out), "-q", *args],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, out, err


def wait_for(what: str, ready: Callable[[], T | None],
             proc: subprocess.Popen[bytes] | None = None, deadline_s: float = STARTUP_S) -> T:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if (value := ready()):
            return value
        assert proc is None or proc.poll() is None, f"the run ended before {what}"
        time.sleep(0.02)
    raise AssertionError(f"waited {deadline_s:.0f} s for {what}")


def journaled(out: Path) -> int:
    """Complete interval lines in the journal so far."""
    try:
        data = (out / "journal.jsonl").read_bytes()
    except FileNotFoundError:
        return 0
    return data[:data.rfind(b"\n") + 1].count(b'"t":"interval"')


def check_rebuilt(out: Path) -> dict:
    """`loadkit report DIR` on a folder without run.json: exit 3, a valid run.json
    and reports that say "incomplete"."""
    assert not (out / "run.json").exists()
    done = cli("report", str(out))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "incomplete" in done.stderr
    result = load_run(out)  # the model validates it
    document = json.loads((out / "run.json").read_text())
    RUN_VALIDATOR.validate(document)
    assert result.incomplete is not None and not result.incomplete.in_progress
    assert not result.trusted and result.untrusted_reasons[0].startswith("incomplete: ")
    assert "incomplete" in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert "⚠ INCOMPLETE" in html and "<strong>Incomplete run:</strong>" in html
    # Rendering the rebuilt run.json again exits 3 again: it stays incomplete.
    again = cli("report", str(out))
    assert again.returncode == 3, again.stderr
    return document


@pytest.mark.slow
def test_kill_9_mid_run_then_report_rebuilds_what_the_server_answered(tmp_path: Path,
                                                                      server: StartServer) -> None:
    rate, interval = 40, 0.5
    with server("record") as url:
        spec = {"name": "killed", "seed": 3, "target": url, "interval": "500ms",
                "duration": "60s", "arrival": {"process": "constant", "rate": rate},
                "client": {"probe": False},
                "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                               "model": "recorded-model", "prompt_tokens": 8,
                               "max_tokens": 2}],
                "slos": ["latency p99 < 2s", "error_rate < 1%",
                         "latency p50 < 1s in every 1s window"]}
        proc, out, _err = start(tmp_path, spec, "--live-report", "off")
        try:
            wait_for("8 intervals in the journal", lambda: journaled(out) >= 8, proc)
        finally:
            proc.kill()  # SIGKILL: nothing of the run's own clean-up happens
            proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        with urllib.request.urlopen(f"{url}/log", timeout=30) as answer:
            logged = sum("messages" in e["body"] for e in json.load(answer))
    assert sorted(p.name for p in out.iterdir()) == ["journal.jsonl", "latency.hlog"]

    document = check_rebuilt(out)
    counts = document["counts"]
    rebuilt = counts["completed"] + counts["errors"]
    # The server saw every request the rebuilt run counts, and at most the
    # interval in progress more (plus a request or two in flight at its start).
    assert counts["errors"] == 0 and counts["dropped"] == 0
    assert 0 <= logged - rebuilt <= rate * interval + 2, (logged, rebuilt)
    assert document["incomplete"]["intervals"] >= 8
    assert sum(iv["completed"] for iv in document["timeseries"]) == rebuilt
    # Measured is what the journal holds, not the 60 s planned: the time the
    # throughput is over, in every output.
    measured = document["incomplete"]["recorded_s"]  # no warm-up here
    result = load_run(out)
    assert result.measured_s == measured < 60 and result.cut_short
    assert document["throughput"]["requests_per_s"] == pytest.approx(
        counts["completed"] / measured, rel=1e-3)
    said = f"{seconds(measured)} measured (of 60 s planned)"
    assert said in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert f"{measured:.4g} s measured (of 60 s planned)" in html
    assert f"{seconds(measured)} of 60 s planned after" in html  # the metadata row
    print(f"\nkill -9 after {document['incomplete']['recorded_s']} s: server logged "
          f"{logged}, rebuilt {rebuilt} ({document['incomplete']['intervals']} intervals)")


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_and_leaves_a_folder_that_rebuilds(tmp_path: Path) -> None:
    spec = {"name": "twice", "seed": 4, "interval": "250ms", "duration": "60s",
            "simulator": {"ttft_ms": 5, "itl_ms": 2},
            "arrival": {"process": "poisson", "rate": 40},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "max_tokens": 8}]}
    proc, out, err = start(tmp_path, spec, "--live-report", "off")
    try:
        wait_for("4 intervals in the journal", lambda: journaled(out) >= 4, proc)
        proc.send_signal(signal.SIGINT)
        wait_for("the first Ctrl-C to be taken", lambda: "stopping the run" in err.read_text())
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.read_text()
    assert proc.returncode == 130, stderr
    assert "interrupted again: exiting now" in stderr and "Traceback" not in stderr
    # It exits before writing anything more; a run.json cut off mid-write (a
    # second Ctrl-C while it is written) would be rebuilt the same way.
    (out / "run.json").unlink(missing_ok=True)
    check_rebuilt(out)


@pytest.mark.slow
def test_report_html_is_rewritten_while_the_run_goes(tmp_path: Path) -> None:
    spec = {"name": "live", "seed": 5, "interval": "250ms", "duration": "60s",
            "simulator": {"ttft_ms": 5, "itl_ms": 2},
            "arrival": {"process": "poisson", "rate": 30},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "max_tokens": 8}]}
    proc, out, err = start(tmp_path, spec, "--live-report", "1s")
    report = out / "report.html"

    def shown() -> str | None:
        """The "after X s of" of an in-progress page, when there is one."""
        try:
            html = report.read_text()
        except FileNotFoundError:
            return None
        if "⏳ IN PROGRESS" not in html:
            return None
        assert html.rstrip().endswith("</html>")  # replaced whole, never half written
        return html.split("rebuilt from the run's journal while the run goes, after ")[1] \
            .split(" s of")[0]

    try:
        first = wait_for("a live report.html", shown, proc)
        later = wait_for("report.html rewritten",
                         lambda: s if (s := shown()) != first else None, proc)
        assert float(later) > float(first)
        # `loadkit report DIR` by hand mid-run: the page, in progress; run.json is the run's.
        by_hand = cli("report", str(out))
        assert by_hand.returncode == 0 and "in progress" in by_hand.stderr, by_hand.stderr
        assert not (out / "run.json").exists()
        proc.send_signal(signal.SIGINT)  # ends the run cleanly: the final report replaces it
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 3, err.read_text()
    html = report.read_text()
    assert "IN PROGRESS" not in html and "INCOMPLETE" not in html
    assert load_run(out).incomplete is None
    assert not (out / ".report.html.live").exists()
    # The live child ended with the run.
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    for p in children:
        try:
            cmdline = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        assert not (b"--live" in cmdline and str(out).encode() in cmdline), p.name


@pytest.mark.slow
def test_a_finished_run_rebuilds_from_its_journal_to_the_same_figures(run: RunWorkload) -> None:
    """The journal and hlog hold everything the verdict needs: without its
    run.json, a finished run rebuilds to the same counts, series, SLO
    verdicts, windows, time series and histograms; clients that left are
    not unfinished there either."""
    original, out = run({
        "name": "same", "duration": 4, "warmup": 1, "interval": "250ms",
        "simulator": {"preset": "fast"}, "goodput": ["ttft <= 1s"],
        "tenants": [{"name": "a", "arrival": {"rate": 30}},
                    {"name": "b", "arrival": {"rate": 10}, "slos": ["error_rate < 5%"],
                     "abandon": {"share": 0.5, "read_tokens": 2}}],
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 20, "max_tokens": 4}],
        "slos": ["ttft p50 < 5s in every 1s window", "goodput >= 50%", "latency p90 < 5s"]})
    assert sum(original["counts"]["abandoned"].values()) > 0
    assert original["counts"]["unfinished"] == 0
    (out / "run.json").unlink()
    rebuilt = json.loads(rebuild(out).to_json())
    for key in ("counts", "errors", "tokens", "timeseries", "isolation", "phases", "workload",
                "throughput"):
        assert rebuilt[key] == original[key], key
    # Reclaim times the server's last scrape settles after the last interval
    # are not in the journal (docs/run-json.md): the rest is the same.
    late = "reclaim_time"
    assert rebuilt["series"][late]["all"]["count"] <= original["series"][late]["all"]["count"]
    assert {k: v for k, v in rebuilt["series"].items() if k != late} \
        == {k: v for k, v in original["series"].items() if k != late}
    assert {k: v for k, v in rebuilt["histograms"].items() if not k.startswith(late)} \
        == {k: v for k, v in original["histograms"].items() if not k.startswith(late)}
    assert original["reclaim"]["abort_counter"] is not None
    assert rebuilt["reclaim"]["abort_counter"] is None \
        and any("not rebuilt" in m for m in rebuilt["reclaim"]["missing"])
    assert [(s["name"], s["verdict"], s["observed"], s["samples"]) for s in rebuilt["slos"]] \
        == [(s["name"], s["verdict"], s["observed"], s["samples"]) for s in original["slos"]]
    assert rebuilt["incomplete"]["reason"].startswith("incomplete: the run ended at")
    assert rebuilt["health"]["lateness_p99_ms"] == original["health"]["lateness_p99_ms"]
    # A run.json an earlier run left in the folder is not this run's: rebuilt too.
    (out / "run.json").write_text(json.dumps({**original, "run_id": "an-earlier-run"}))
    done = cli("report", str(out))
    assert done.returncode == 3, done.stderr
    assert load_run(out).run_id == original["run_id"]
