"""The CLI as a user runs it: exit codes, messages, outputs, no tracebacks."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.outputs.format import seconds
from support.run import ROOT, cli

FAST_CHAT: dict[str, Any] = {
    "name": "fast", "duration": "3s", "warmup": "1s",
    "simulator": {"ttft_ms": 5, "itl_ms": 2},
    "arrival": {"process": "poisson", "rate": 50},
    "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True, "max_tokens": 8}],
}

# Runs whose exit code is the point: the generator's own health (lateness
# within its 10-ms bound, a wall-clock bound this machine may miss when busy)
# is tested on its own (integration/test_faults.py), so it must not turn
# their exit code into 3 here.
ANY_HOST = "--allow-saturated"


def write(tmp_path: Path, spec: dict | str, name: str = "w.yaml") -> str:
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout


def test_malformed_workload_exits_2_with_line_and_key(tmp_path: Path) -> None:
    text = ("name: bad\nduration: 10s\nscenarios:\n  - name: c\n    kind: openai-chat\n"
            "tenants:\n  - name: a\n    arrival: {rate: 5}\n  - name: b\n    arrival:\n"
            "      rate: -3\n")
    proc = cli("run", write(tmp_path, text))
    assert proc.returncode == 2
    assert "w.yaml:11: tenants[1].arrival.rate: must be > 0" in proc.stderr
    no_traceback(proc)


def test_invalid_yaml_and_unknown_kind_exit_2(tmp_path: Path) -> None:
    proc = cli("run", write(tmp_path, "name: [unclosed\nduration: 1s\n"))
    assert proc.returncode == 2 and "invalid YAML" in proc.stderr and "w.yaml:" in proc.stderr
    bad_kind = dict(FAST_CHAT, scenarios=[{"name": "x", "kind": "grpc"}])
    proc = cli("run", write(tmp_path, bad_kind, "k.yaml"))
    assert proc.returncode == 2 and "k.yaml:" in proc.stderr and "scenarios[0]" in proc.stderr
    proc = cli("run", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr
    no_traceback(proc)


def test_bad_flag_exits_2(tmp_path: Path) -> None:
    """Through the real console entry point (`python -m loadkit`), as a user runs it."""
    proc = cli("run", write(tmp_path, FAST_CHAT), "--duration", "soon", process=True)
    assert proc.returncode == 2 and "duration" in proc.stderr
    no_traceback(proc)


@pytest.mark.parametrize("args", [
    ("run", "--rate", "nan"), ("plan", "--rate", "nan"),
    ("capacity", "--min", "nan"), ("capacity", "--production-rate", "NaN")])
def test_a_load_of_nan_is_a_bad_flag(tmp_path: Path, args: tuple[str, ...]) -> None:
    """NaN passes every bound of a range: it is refused as the flag it is,
    not blamed on the workload file nor searched over."""
    command, *flag = args
    out = [] if command == "plan" else ["--out", str(tmp_path / "out")]  # plan writes nothing
    proc = cli(command, write(tmp_path, FAST_CHAT), *flag, *out)
    assert proc.returncode == 2, proc.stderr
    assert f"Invalid value for '{flag[0]}': a number, not nan" in proc.stderr
    assert not (tmp_path / "out").exists()
    no_traceback(proc)


def test_unreachable_target_exits_3(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli("run", write(tmp_path, FAST_CHAT), "--target", f"http://127.0.0.1:{port}",
               "--out", str(tmp_path / "out"))
    assert proc.returncode == 3
    assert f"cannot connect to http://127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing measured: no empty folder left
    no_traceback(proc)


def test_a_target_that_hangs_up_at_once_is_unreachable_with_the_reason(tmp_path: Path) -> None:
    """A server that accepts the connection and closes it unanswered: the
    pre-flight says what happened, not only the exception's name."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]

        def hang_up() -> None:  # reads the request, answers nothing
            with contextlib.suppress(OSError):  # the listening socket closed: done
                while True:
                    conn, _ = server.accept()
                    with conn:
                        while b"\r\n\r\n" not in (got := conn.recv(65536)) and got:
                            pass

        threading.Thread(target=hang_up, daemon=True).start()
        proc = cli("run", write(tmp_path, FAST_CHAT), "--target",
                   f"http://user:s3cret@127.0.0.1:{port}", "--out", str(tmp_path / "out"))
    assert proc.returncode == 3, proc.stderr
    assert (f"http://127.0.0.1:{port}: RemoteProtocolError: Server disconnected without "
            "sending a response") in proc.stderr, proc.stderr
    assert "s3cret" not in proc.stderr
    no_traceback(proc)


@pytest.mark.slow
def test_pass_writes_every_output(tmp_path: Path) -> None:
    spec = dict(FAST_CHAT, slos=["itl p50 < 100ms", "error_rate < 1%"])
    out = tmp_path / "out"
    step_summary = tmp_path / "step.md"
    step_summary.write_text("earlier step\n")
    proc = cli("run", write(tmp_path, spec), "--out", str(out), ANY_HOST,
               env={**os.environ, "GITHUB_STEP_SUMMARY": str(step_summary)})
    assert proc.returncode == 0, proc.stderr
    for name in ("run.json", "latency.hlog", "summary.md", "junit.xml", "report.html"):
        assert (out / name).stat().st_size > 0, name
    result = json.loads((out / "run.json").read_text())
    assert result["schema_version"] == 2 and result["verdict"] == "pass"
    assert [s["verdict"] for s in result["slos"]] == ["pass", "pass"]
    for key in ("count", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"):
        assert key in result["series"]["latency"]["all"]
    assert "verdict: PASS (exit 0)" in proc.stderr
    # appended to GitHub's step summary, after what was there
    assert step_summary.read_text() == "earlier step\n" + (out / "summary.md").read_text() + "\n"


@pytest.mark.slow
def test_outputs_writes_only_the_reports_asked_for(tmp_path: Path) -> None:
    """CI users skip the HTML: run.json, the journal and the hlog stay (the
    result and its recovery), `loadkit report` renders the rest later."""
    out = tmp_path / "out"
    proc = cli("run", write(tmp_path, FAST_CHAT), "--out", str(out), "--duration", "1s",
               "--outputs", "json,junit", ANY_HOST, "--inconclusive", "pass")
    assert proc.returncode == 0, proc.stderr
    written = {p.name for p in out.iterdir()}
    assert {"run.json", "junit.xml", "journal.jsonl", "latency.hlog"} <= written
    assert not written & {"report.html", "summary.md"}
    # The console points at a file that is there: run.json, the only page written.
    assert f"report: {out / 'run.json'}" in proc.stderr + proc.stdout
    assert "report.html" not in proc.stderr + proc.stdout
    rendered = cli("report", str(out / "run.json"))  # the file, or its folder
    assert rendered.returncode == 0 and (out / "report.html").exists()
    assert f"report: {out / 'report.html'}" in rendered.stdout
    bad = cli("run", write(tmp_path, FAST_CHAT), "--outputs", "json,pdf")
    assert bad.returncode == 2 and "unknown output(s) pdf" in bad.stderr
    no_traceback(bad)
    # Another run or search into that folder is refused before anything is
    # sent: it would overwrite these measurements and leave this junit.xml
    # beside its own results (an audit found both).
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for command in ("run", "capacity"):
        again = cli(command, write(tmp_path, FAST_CHAT), "--out", str(out))
        assert again.returncode == 2, again.stderr
        assert f"{out} already holds a result (journal.jsonl, latency.hlog, run.json)" \
            in again.stderr
        no_traceback(again)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow  # three 1-s runs through the CLI
def test_failed_slo_exits_1_and_inconclusive_follows_the_flag(tmp_path: Path) -> None:
    short = dict(FAST_CHAT, duration="1s", warmup="0s")
    failing = dict(short, slos=["ttft p50 < 1ms"])
    proc = cli("run", write(tmp_path, failing), "--out", str(tmp_path / "a"), ANY_HOST)
    assert proc.returncode == 1 and "fail" in proc.stderr
    # 1 s at 50/s is ~50 samples: too few for p99.9 (needs 10,000)
    unsure = dict(short, slos=["latency p99.9 < 10s"])
    proc = cli("run", write(tmp_path, unsure, "u.yaml"), "--out", str(tmp_path / "b"), ANY_HOST)
    assert proc.returncode == 1 and "needs at least 10000" in proc.stderr
    proc = cli("run", write(tmp_path, unsure, "u.yaml"), "--out", str(tmp_path / "c"),
               "--inconclusive", "pass", ANY_HOST)
    assert proc.returncode == 0
    junit = (tmp_path / "c" / "junit.xml").read_text()
    assert "<skipped" in junit and "inconclusive" in junit


def test_a_run_that_completes_no_request_is_never_a_pass(tmp_path: Path) -> None:
    """No SLO, and no request in the measured phase (seed 1 draws no Poisson
    arrival at 0.01/s in 1 s): no sample, so no pass, but inconclusive."""
    idle = dict(FAST_CHAT, duration="1s", warmup="0s", seed=1,
                arrival={"process": "poisson", "rate": 0.01})
    proc = cli("run", write(tmp_path, idle), "--out", str(tmp_path / "a"), ANY_HOST)
    assert proc.returncode == 1, proc.stderr
    result = json.loads((tmp_path / "a" / "run.json").read_text())
    assert result["verdict"] == "inconclusive" and result["counts"]["completed"] == 0
    assert "no request completed in the measured phases" in proc.stderr
    assert "No request completed" in (tmp_path / "a" / "summary.md").read_text()
    # a workload that would send nothing at all is refused, by plan as by run
    silent = dict(FAST_CHAT, tenants=[{"name": "t", "arrival": {"rate": 3},
                                       "phases": {"measure": None}}])
    del silent["arrival"]
    for command, out in (("plan", []), ("run", ["--out", str(tmp_path / "b")])):
        proc = cli(command, write(tmp_path, silent, "s.yaml"), *out)
        assert proc.returncode == 2, proc.stderr
        assert "every tenant is silent (null, or a rate of 0 all through) in every " \
            "measured phase" in proc.stderr
    assert not (tmp_path / "b").exists()


def test_plan_counts_a_prompt_set_s_own_lengths(tmp_path: Path) -> None:
    """Not the scenario's default prompt length: the set's (kept) prompts."""
    (tmp_path / "p.jsonl").write_text('{"prompt": "three words here"}\n'
                                      '{"prompt": "and five words in this"}\n')
    spec = dict(FAST_CHAT, scenarios=[dict(FAST_CHAT["scenarios"][0], prompts="p.jsonl",
                                           prompts_filter={"min_tokens": 4})])
    proc = cli("plan", write(tmp_path, spec))
    assert proc.returncode == 0, proc.stderr
    total = next(line.split() for line in proc.stdout.splitlines() if line.startswith("total"))
    assert int(total[2].replace(",", "")) == 5 * int(total[1].replace(",", "")), proc.stdout
    assert "each request at its prompt set's mean" in proc.stdout


def test_a_prompts_filter_that_keeps_nothing_is_refused_by_plan_as_by_run(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "three words here"}\n'
                                      '{"prompt": "and five words in this"}\n')
    spec = dict(FAST_CHAT, scenarios=[dict(FAST_CHAT["scenarios"][0], prompts="p.jsonl",
                                           prompts_filter={"min_tokens": 100})])
    path = write(tmp_path, spec)
    for command, out in (("plan", []), ("run", ["--out", str(tmp_path / "out")])):
        proc = cli(command, path, *out)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr)
        assert ("w.yaml:16: scenarios[0].prompts_filter: keeps none of the 2 prompts of "
                "p.jsonl (their lengths run from 3 to 5 words") in proc.stderr, proc.stderr
        assert "request" not in proc.stdout  # no schedule shown for it
    assert not (tmp_path / "out").exists()


def test_a_capacity_budget_that_cannot_hold_the_first_probe_exits_2(tmp_path: Path) -> None:
    """Before any probe: a first probe stretched to send what its SLOs need
    to be decided is held to the budget as a plain one is (an audit saw 0
    probes in 0 s, exit 1)."""
    capacity = str(ROOT / "workloads" / "capacity.yaml")
    for budget, words in (("3s", "cannot hold one probe of 2s"),
                          ("25s", "cannot hold the first probe: its SLOs need")):
        out = tmp_path / budget
        proc = cli("capacity", capacity, "--probe", "2s", "--budget", budget, "--out", str(out))
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert not out.exists() and "results in" not in proc.stderr  # no folder promised
        no_traceback(proc)


@pytest.mark.slow
def test_secrets_never_reach_outputs(tmp_path: Path) -> None:
    """Neither a secret from the environment nor one written in the file
    (a literal key header, a tenant's literal api_key) reaches any output."""
    secret, literal = "sk-test-5ecret-value-0123456789", "sk-LITERAL-in-the-file-42"
    spec = dict(FAST_CHAT)
    spec["scenarios"] = [dict(FAST_CHAT["scenarios"][0],
                              headers={"Authorization": "Bearer ${LOADKIT_TEST_KEY}",
                                       "X-Api-Key": literal, "X-Team": "search"})]
    spec["tenants"] = [{"name": "acme", "api_key": literal + "-tenant",
                        "arrival": spec.pop("arrival")}]
    out = tmp_path / "out"
    env = {**os.environ, "LOADKIT_TEST_KEY": secret}
    proc = cli("run", write(tmp_path, spec), "--out", str(out), ANY_HOST, env=env)
    assert proc.returncode == 0, proc.stderr
    for f in out.iterdir():
        assert secret not in f.read_text(errors="replace"), f.name
        assert literal not in f.read_text(errors="replace"), f.name
    shown = json.loads((out / "run.json").read_text())["workload"]["spec"]
    assert shown["scenarios"][0]["headers"] == {"Authorization": "Bearer ${LOADKIT_TEST_KEY}",
                                                "X-Api-Key": "***", "X-Team": "search"}
    assert shown["tenants"][0]["api_key"] == "***"
    assert secret not in proc.stdout + proc.stderr
    # and a missing variable is bad input, named
    env.pop("LOADKIT_TEST_KEY")
    proc = cli("run", write(tmp_path, spec), "--out", str(tmp_path / "o2"), env=env)
    assert proc.returncode == 2 and "LOADKIT_TEST_KEY" in proc.stderr


@pytest.mark.slow
def test_overrides_replace_the_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("run", write(tmp_path, FAST_CHAT), "--out", str(out), "--duration", "2s",
               "--rate", "30", "--seed", "9", ANY_HOST)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "run.json").read_text())
    assert result["workload"]["duration_s"] == 2.0 and result["workload"]["seed"] == 9
    assert result["workload"]["spec"]["arrival"]["rate"] == 30.0
    assert 30 <= result["counts"]["completed"] <= 100  # ~60 expected at 30/s for 2 s


@pytest.mark.slow
def test_shipped_steady_workload_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("run", str(ROOT / "workloads" / "steady.yaml"), "--duration", "3s",
               "--out", str(out), "--inconclusive", "pass", ANY_HOST)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "run.json").read_text())
    assert result["counts"]["completed"] > 50 and result["counts"]["errors"] == 0


def interrupted(tmp_path: Path, arrival: dict) -> dict:
    """A 60-s run of `arrival` given SIGINT 1.5 s after its first interval:
    it exits 3 with what it measured, untrusted; returns its run.json."""
    import signal
    import subprocess
    import sys
    import time

    spec = dict(FAST_CHAT, duration="60s", warmup="0s", arrival=arrival)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "loadkit", "run", write(tmp_path, spec),
                             "--out", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)

    def measured_an_interval() -> bool:  # the run's first 1-s interval is in the log
        hlog = out / "latency.hlog"
        return hlog.exists() and "Tag=latency.measure" in hlog.read_text()

    deadline = time.monotonic() + 30  # a wait for startup, not a bound
    while not measured_an_interval() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert ", untrusted (exit 3)" in stderr  # whatever the verdict was, it says so
    result = json.loads((out / "run.json").read_text())
    assert not result["trusted"] and "interrupted" in result["untrusted_reasons"][0]
    return result


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_measured(tmp_path: Path) -> None:
    """SIGINT mid-run: the schedule stops, results are written, exit 3."""
    result = interrupted(tmp_path, {"process": "poisson", "rate": 50})
    # Stopped where it was interrupted (~2.5 s in), by its own clock, not at the
    # end of its 60-s schedule; and what it counted matches that clock: every
    # arrival sent is accounted for, at the Poisson 50/s of the schedule.
    c, ended_s = result["counts"], result["timeseries"][-1]["end_s"]
    assert ended_s < 60 / 2, result["timeseries"][-1]
    sent = sum(c["scheduled"].values())
    assert c["completed"] + c["errors"] + c["dropped"] + c["unfinished"] == sent, c
    assert abs(sent - 50 * ended_s) <= 4 * math.sqrt(50 * ended_s) + 1, (sent, ended_s)
    assert c["completed"] > 0 and c["errors"] == 0  # the simulator outlived the interrupt
    # Its rates and the reports' "measured" are over the time it ran, not the 60 s planned.
    assert result["ended_s"] == pytest.approx(ended_s, abs=0.001)
    assert result["throughput"]["requests_per_s"] == pytest.approx(c["completed"] / ended_s,
                                                                    rel=0.1)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert f"{seconds(ended_s)} measured (of 60 s planned)" in summary, summary[:400]


@pytest.mark.slow
def test_ctrl_c_in_a_long_gap_stops_without_waiting_for_the_next_slot(tmp_path: Path) -> None:
    """One request every 30 s: the interrupt ~2.5 s in ends the run then (the
    dispatcher looks at its stop between naps), not at the next slot."""
    result = interrupted(tmp_path, {"process": "constant", "rate": 1 / 30})
    c, ended_s = result["counts"], result["timeseries"][-1]["end_s"]
    assert ended_s < 30 / 2, result["timeseries"][-1]  # the next slot is at 30 s
    assert sum(c["scheduled"].values()) == c["completed"] == 1, c
