"""Distributed runs (issue 14) with the real parts: Locust's master and worker
runners in their own processes, loadkit's shards in theirs, real servers on
loopback. Every figure is checked against the schedule (pure, computed here
for the same workload and seed) or the server's own clock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.arrivals import schedule
from loadkit.distributed.fleet import FleetOptions
from loadkit.distributed.wire import shard
from loadkit.workload.loader import load_workload
from support.run import ROOT, RunWorkload, StartServer
from support.truth import exact_percentile, fetch

TIMED = {"quiet_gc": True}


@pytest.mark.slow
@pytest.mark.timing
def test_three_workers_measure_the_single_process_schedule_exactly(server: StartServer,
                                                                   run: RunWorkload,
                                                                   tmp_path: Path) -> None:
    """Master + 3 workers against the truth server: every slot of the one-process
    schedule is sent once (per phase and tenant), and the merged p50/p99 are
    the server's own within max(1 ms + the workers' lateness p99, 2%)."""
    spec = {"name": "fleet", "seed": 11,
            "phases": [{"name": "low", "duration": "3s"}, {"name": "high", "duration": "3s"}],
            "tenants": [{"name": "a", "arrival": {"process": "poisson", "rate": 30},
                         "phases": {"high": {"process": "poisson", "rate": 60}}},
                        {"name": "b", "arrival": {"process": "poisson", "rate": 15}}],
            "scenarios": [{"name": "echo", "kind": "http", "method": "POST", "path": "/echo",
                           "body": {"x": 1}}]}
    with server("truth", "--seed", "7") as url:
        result, out = run({**spec, "target": url}, probe=False,
                          fleet=FleetOptions(workers=3, local=True), **TIMED)
        truth = fetch(url + "/truth")
    expected: Counter[str] = Counter()
    w = load_workload(out.parent / "w.yaml").workload
    for slot in schedule(w):
        expected[f"{w.phase_list[slot.phase].name}/{w.all_tenants[slot.tenant].name}"] += 1
    assert result["counts"]["scheduled"] == dict(expected)
    n = sum(expected.values())
    assert result["counts"]["completed"] == len(truth) == n and result["counts"]["errors"] == 0
    # The workers' requests that ended in the measured time (throughput's), merged:
    # a server never overloaded delivers the load, but for those at the edges.
    served = result["throughput"]["requests_per_s"] * 6
    assert abs(served - n) <= max(3, 0.02 * n), (served, n)
    lat = result["series"]["latency"]["all"]
    workers = result["distribution"]["workers"]
    # A latency is the server's time + the wire (0.2-0.4 ms) + its send's
    # lateness, which the workers measure themselves: on two cores shared with
    # a master, a server and other tests it was 1.57 ms at p99 once (ci38), so
    # the bound is the slowest worker's own lateness p99 (the run must still be
    # trusted, below), not a figure fixed for every host.
    late_ms = max(r["lateness_p99_ms"] or 0.0 for r in workers)
    for q, key in ((0.50, "p50"), (0.99, "p99")):
        server_ms = exact_percentile(truth, q)
        assert lat[key] >= server_ms * 0.999, (key, lat[key], server_ms)
        assert lat[key] - server_ms <= max(1.0 + late_ms, 0.02 * server_ms), (
            key, lat[key], server_ms, late_ms)
    assert len(workers) == 3 and {r["status"] for r in workers} == {"done"}
    assert sorted(r["shard"] for r in workers) == sorted(
        len(list(shard(schedule(w), k, 3))) for k in range(3))
    assert all(r["sent"] == r["shard"] for r in workers)
    for r in workers:  # one host: the true offset is 0, the estimate's error <= rtt/2
        assert abs(r["clock_offset_ms"]) <= r["rtt_ms"] / 2 + 0.05, r
    assert result["trusted"], result["untrusted_reasons"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(tmp_path: Path, spec: dict) -> str:
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


STEADY: dict[str, Any] = {
    "name": "steady", "duration": "12s", "warmup": "0s", "seed": 5,
    "simulator": {"ttft_ms": 5, "itl_ms": 2}, "arrival": {"process": "constant", "rate": 60},
    "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True, "max_tokens": 8}]}


def relay_workers(master_pid: int) -> list[int]:
    """The Locust worker processes the master started (its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master_pid and b"loadkit.distributed.relay" in cmd and b"worker" in cmd:
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("allow", [False, True], ids=["untrusted", "allowed"])
def test_a_worker_killed_mid_run_is_lost_counted_and_named(tmp_path: Path, allow: bool) -> None:
    """Every slot is accounted for once: a lost worker's clients that left
    before it died are abandoned, not also unfinished (`allowed` has them)."""
    out = tmp_path / "out"
    spec = STEADY if not allow else {**STEADY, "scenarios": [
        {**STEADY["scenarios"][0], "abandon": {"share": 0.3, "read_tokens": 2}}]}
    proc = subprocess.Popen(
        [sys.executable, "-m", "loadkit", "run", write(tmp_path, spec), "--workers", "3",
         "--out", str(out), "--inconclusive", "pass", "--allow-saturated",
         *(["--allow-worker-loss"] if allow else [])],
        cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # a wait for startup, not a bound
    while time.monotonic() < deadline:  # the run's first interval is merged
        hlog = out / "latency.hlog"
        if hlog.exists() and "Tag=latency." in hlog.read_text():
            break
        time.sleep(0.1)
    victims = relay_workers(proc.pid)
    assert len(victims) == 3, victims
    os.kill(victims[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=90)
    result = json.loads((out / "run.json").read_text())
    dist, c = result["distribution"], result["counts"]
    lost = [r for r in dist["workers"] if r["status"] != "done"]
    assert len(lost) == 1 and lost[0]["status"].startswith("lost at"), dist
    assert lost[0]["lost"] > 0 and dist["lost"] == lost[0]["lost"]
    # Every slot of the schedule is accounted for, the lost ones included.
    assert sum(c["scheduled"].values()) == 12 * 60
    left = sum(c["abandoned"].values())
    assert left > 0 if allow else left == 0
    assert c["completed"] + c["errors"] + c["dropped"] + c["unfinished"] + left \
        + dist["lost"] == 12 * 60, (c, dist)
    assert c["errors"] == lost[0]["unfinished"] == result["errors"]["by_kind"].get(
        "unfinished", 0), result["errors"]
    name = lost[0]["worker"]
    assert name in (out / "report.html").read_text() and name in (out / "summary.md").read_text()
    if allow:
        assert result["trusted"] and name in dist["note"], result
        assert proc.returncode in (0, 1), stderr
    else:
        assert proc.returncode == 3, stderr
        assert not result["trusted"] and any(name in r for r in result["untrusted_reasons"])
        assert "Traceback" not in stderr


@pytest.mark.slow
def test_a_master_that_cannot_listen_says_why_and_exits_2(tmp_path: Path) -> None:
    """The port taken: the reason, exit 2, and no Locust traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "loadkit", "run", write(tmp_path, STEADY), "--master",
             "--expect-workers", "1", "--master-bind-port", str(port), "--out",
             str(tmp_path / "out")], cwd=ROOT, env={**os.environ, "LOADKIT_TOKEN": "t"},
            capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert f"could not listen on 127.0.0.1:{port}" in done.stderr
    assert "Address already in use" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_a_loopback_master_without_a_token_takes_a_worker_and_its_bad_input_exits_2(
        tmp_path: Path) -> None:
    """No LOADKIT_TOKEN on loopback: the worker joins and the run is measured.
    A worker whose environment lacks the workload's ${VAR} is bad input
    there: it says so and exits 2, and so does the master."""
    spec = {**STEADY, "duration": "2s", "scenarios": [
        {**STEADY["scenarios"][0], "headers": {"X-Key": "${LOADKIT_TEST_WORKER_KEY}"}}]}
    env = {k: v for k, v in os.environ.items() if k != "LOADKIT_TOKEN"}
    for worker_has_it, code in ((True, 0), (False, 2)):
        port = free_port()
        master = subprocess.Popen(
            [sys.executable, "-m", "loadkit", "run", write(tmp_path, spec), "--master",
             "--expect-workers", "1", "--master-bind-port", str(port), "--worker-timeout", "20s",
             "--inconclusive", "pass", "--allow-saturated", "--out", str(tmp_path / f"o{code}")],
            cwd=ROOT, env={**env, "LOADKIT_TEST_WORKER_KEY": "k"}, stderr=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # the master's port is open once it has loaded the workload
        worker_env = {**env, **({"LOADKIT_TEST_WORKER_KEY": "k"} if worker_has_it else {})}
        worker = subprocess.run(
            [sys.executable, "-m", "loadkit", "worker", "--master", f"127.0.0.1:{port}"],
            cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=60)
        _, stderr = master.communicate(timeout=60)
        assert (master.returncode, worker.returncode) == (code, code), (stderr, worker.stderr)
        assert "Traceback" not in stderr + worker.stderr
        if worker_has_it:
            result = json.loads((tmp_path / "o0" / "run.json").read_text())
            assert result["counts"]["completed"] > 0 and result["distribution"]["workers"]
        else:
            assert "LOADKIT_TEST_WORKER_KEY" in worker.stderr, worker.stderr
            assert "LOADKIT_TEST_WORKER_KEY" in stderr and "failed before the start" in stderr


@pytest.mark.slow
def test_a_worker_with_the_wrong_token_is_refused_and_the_run_exits_3(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "LOADKIT_TOKEN": "right-token"}
    master = subprocess.Popen(
        [sys.executable, "-m", "loadkit", "run", write(tmp_path, STEADY), "--master",
         "--expect-workers", "1", "--master-bind-port", str(port), "--worker-timeout", "8s",
         "--out", str(tmp_path / "out")],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)  # the master's port is open once it has loaded the workload
    worker = subprocess.run(
        [sys.executable, "-m", "loadkit", "worker", "--master", f"127.0.0.1:{port}"],
        cwd=ROOT, env={**env, "LOADKIT_TOKEN": "wrong"}, capture_output=True, text=True,
        timeout=60)
    assert worker.returncode == 2 and "refused" in worker.stderr, worker.stderr
    _, stderr = master.communicate(timeout=60)
    assert master.returncode == 3, stderr
    assert "1 of 1 expected workers did not join" in stderr
    assert "refused" in stderr and "wrong or missing token" in stderr
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_an_abort_slo_stops_every_worker(run: RunWorkload) -> None:
    """Every answer takes 300 ms: the master's abort SLO, judged on the merged
    intervals, stops all workers at once; each leaves most of its shard unsent."""
    result, _ = run({
        "name": "abort", "duration": 30, "warmup": 0,
        "simulator": {"ttft_ms": 300, "itl_ms": 1},
        "arrival": {"process": "constant", "rate": 40},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 4}],
        "slos": [{"slo": "latency p50 < 100ms", "abort": True, "after": "1s"}],
    }, fleet=FleetOptions(workers=2, local=True))
    assert result["aborted"] is not None and result["verdict"] == "fail"
    workers = result["distribution"]["workers"]
    assert len(workers) == 2
    for r in workers:  # each stopped long before its 30-s shard was sent
        assert r["status"] == "done" and r["sent"] < r["shard"] / 2, r


@pytest.mark.slow
def test_two_workers_number_the_requests_as_one_process_does(server: StartServer,
                                                               run: RunWorkload) -> None:
    """Each prompt starts with its request's number (unique prompts). Sharded
    over 2 workers, one tenant, the numbers are the one process's, 1 to N:
    they were 2 to N + 1 (a shard took its step before its first number)."""
    spec = {"name": "numbers", "seed": 4, "duration": "2s",
            "arrival": {"process": "poisson", "rate": 20},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": False,
                           "model": "recorded-model", "prompt_tokens": 6, "max_tokens": 1}]}
    numbers = []
    for fleet in (None, FleetOptions(workers=2, local=True)):
        with server("record") as url:
            run({**spec, "target": url}, probe=False,
                **({"fleet": fleet} if fleet else {}))
            log = fetch(url + "/log")
        numbers.append(sorted(int(e["body"]["messages"][-1]["content"].split(":")[0])
                              for e in log))
    assert numbers[0] == list(range(1, len(numbers[0]) + 1)) and len(numbers[0]) > 20
    assert numbers[1] == numbers[0]
