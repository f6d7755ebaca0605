"""A bounded end (issue 12, item 1): a run ends whatever its target does.

Against tests/endless_server.py: a stream that never stops is cut at
4 × max_tokens + 16 token events and counted as `protocol`; an answer that
never finishes is cancelled `client.drain` after the schedule and counted as
a failure of kind `unfinished` (error rate and tails); a stop by an abort SLO
cancels what is in flight at once, counted the same way. Over both
transports. Every bound is checked against the run's own clock (its phases
and intervals in run.json), never a wall-clock window of this machine.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import resource
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.run import RunWorkload, cli

REPORTS = ("run.json", "latency.hlog", "summary.md", "junit.xml", "report.html")


@pytest.fixture(params=["lean", "aiohttp"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def server_log(url: str) -> dict:
    with urllib.request.urlopen(url + "/log", timeout=10) as resp:
        return json.loads(resp.read())


def settled_log(url: str, kind: str) -> dict:
    """The server's counts once it has seen every connection of `kind`
    closed (the closes cross a process boundary); the wait is a bound on
    startup-like noise, not a measurement."""
    deadline = time.monotonic() + 10
    while (log := server_log(url)[kind])["open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return log


def chat(path: str, **extra: Any) -> dict[str, Any]:
    return {"name": "chat", "kind": "openai-chat", "path": path, "model": "endless-model",
            "stream": True, "prompt_tokens": 4, "max_tokens": 8, **extra}


@pytest.mark.slow
def test_endless_stream_is_cut_and_counted_as_protocol(endless_server: str, run: RunWorkload,
                                                       transport: str) -> None:
    spec = {"name": "endless", "target": endless_server, "duration": "6s", "warmup": "0s",
            "arrival": {"process": "constant", "rate": 10}, "scenarios": [chat("/endless")],
            "client": {"transport": transport}, "slos": ["error_rate < 1%"]}
    r, out = run(spec, probe=False, html=True)

    sent = sum(r["counts"]["scheduled"].values())
    assert sent == 60
    by_kind = {k: n for k, n in r["errors"]["by_kind"].items() if n}
    assert by_kind == {"protocol": sent}, r["errors"]
    assert r["counts"]["completed"] == 0 and r["counts"]["unfinished"] == 0, r["counts"]
    assert r["verdict"] == "fail" and r["slos"][0]["observed"] == 1.0  # exit 1
    for message in r["errors"]["examples"]["protocol"]:
        m = re.fullmatch(r"stream cut after ([\d,]+) tokens: more than 4 × max_tokens \+ 16 "
                         r"\(max_tokens 8\)", message)
        assert m, message
        assert int(m.group(1).replace(",", "")) > 4 * 8 + 16
    # Each stream was cut as it ran past its cap, not left to the drain: the
    # run ended well inside the 30-s default drain after its schedule.
    total_s = sum(p["duration_s"] for p in r["phases"])
    ended_s = r["timeseries"][-1]["end_s"]
    assert ended_s < total_s + 5, (total_s, ended_s)
    # The client closed every cut stream's connection; each request reached it.
    log = settled_log(endless_server, "endless")
    assert log == {"started": sent, "open": 0}, log
    for name in REPORTS:
        assert (out / name).stat().st_size > 0, name


def _enough_files(wanted: int = 8192) -> None:
    """Over a thousand answers stay open at once (a p99 verdict needs 1,000
    attempts): let this process, and the CLI it starts, hold their sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


@pytest.mark.slow
def test_never_finishing_answers_end_after_the_drain_as_failures(
        endless_server: str, tmp_path: Path, transport: str) -> None:
    _enough_files()
    drain_s = 1.0
    spec = {"name": "never", "target": endless_server, "duration": "6s", "warmup": "0s",
            "arrival": {"process": "constant", "rate": 200}, "scenarios": [chat("/never")],
            "client": {"transport": transport, "probe": False, "drain": "1s",
                       "connections": 2000},
            "slos": ["latency p99 < 2s", "error_rate < 1%"]}
    path = tmp_path / "never.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "out"
    done = cli("run", str(path), "--out", str(out), "-q")  # its timeout guards a hang only
    assert done.returncode in (1, 3), done.stderr
    assert "Traceback" not in done.stderr
    for name in REPORTS:
        assert (out / name).stat().st_size > 0, name
    r = json.loads((out / "run.json").read_text())

    # Every request was in the measured phase, none answered: each is a failure.
    sent = sum(r["counts"]["scheduled"].values())
    assert sent >= 1000, r["counts"]
    assert r["counts"]["completed"] == 0 and r["counts"]["unfinished"] == 0, r["counts"]
    assert r["counts"]["errors"] == sent, r["counts"]
    by_kind = {k: n for k, n in r["errors"]["by_kind"].items() if n}
    assert by_kind == {"unfinished": sent}, r["errors"]
    assert r["errors"]["examples"]["unfinished"][0] == (
        "still in flight 1 s after the schedule ended (client.drain); cancelled")
    slos = {s["text"]: s for s in r["slos"]}
    assert slos["error_rate < 1%"]["verdict"] == "fail"
    assert slos["error_rate < 1%"]["observed"] == 1.0
    assert slos["latency p99 < 2s"]["verdict"] == "fail", slos["latency p99 < 2s"]
    assert r["verdict"] == "fail"

    # It waited the drain and no longer: by its own clock, it ended within
    # schedule + drain + 5 s (the interval grid and the last cancellations).
    total_s = sum(p["duration_s"] for p in r["phases"])
    ended_s = r["timeseries"][-1]["end_s"]
    assert total_s + drain_s <= ended_s <= total_s + drain_s + 5, (total_s, ended_s)
    took = (dt.datetime.fromisoformat(r["finished_at"])
            - dt.datetime.fromisoformat(r["started_at"])).total_seconds()
    assert took <= total_s + drain_s + 5 + 1, took  # +1: whole-second stamps
    # The client let go of every connection it cancelled.
    log = settled_log(endless_server, "never")
    assert log == {"started": sent, "open": 0}, log


def test_an_abort_cancels_what_is_in_flight_at_once(endless_server: str, run: RunWorkload,
                                                    transport: str) -> None:
    """A fast scenario breaks an impossible abort SLO; the never-ending
    requests in flight when it stops the run are cancelled at once (not after
    the 30-s default drain) and counted as `unfinished` failures."""
    spec = {"name": "abort", "target": endless_server, "duration": "20s", "warmup": "0s",
            "arrival": {"process": "constant", "rate": 40},
            "scenarios": [{"name": "ok", "kind": "http", "method": "GET", "path": "/ok"},
                          chat("/never")],
            "client": {"transport": transport},
            "slos": [{"slo": "latency p50 < 1us", "abort": True, "after": "1s",
                      "scenario": "ok"}]}
    r, _ = run(spec, probe=False)

    aborted = r["aborted"]
    assert aborted is not None, r["slos"]
    ended_s = r["timeseries"][-1]["end_s"]
    assert ended_s < 20 and ended_s - aborted["at_s"] < 30  # stopped, never drained
    c = r["counts"]
    assert c["unfinished"] == 0
    assert c["completed"] + c["errors"] + c["dropped"] == sum(c["scheduled"].values()), c
    # The never-ending requests are exactly the failures; the fast ones answered.
    unfinished = r["errors"]["by_kind"]["unfinished"]
    assert unfinished == c["errors"] > 0, r["errors"]
    assert r["series"]["latency"]["scenario:ok"]["count"] == c["completed"] > 0
    example = r["errors"]["examples"]["unfinished"][0]
    assert example.startswith("in flight when the abort SLO `latency p50 < 1us") \
        and example.endswith("stopped the run; cancelled at once"), example
    # Each was let go of (one sent in the stop's last moment may not have
    # reached the server).
    log = settled_log(endless_server, "never")
    assert log["open"] == 0 and 0 <= unfinished - log["started"] <= 1, (log, unfinished)


def test_the_probe_refuses_an_endless_stream_before_the_clock(endless_server: str, tmp_path: Path,
                                                              transport: str) -> None:
    """The probe's own stream is cut the same way: a server that ignores
    max_tokens stops the run before it starts (exit 3), saying so."""
    spec = {"name": "probe", "target": endless_server, "duration": "6s",
            "arrival": {"rate": 5}, "scenarios": [chat("/endless")],
            "client": {"transport": transport}}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    done = cli("run", str(path), "--out", str(tmp_path / "out"), "-q")
    assert done.returncode == 3, done.stderr
    assert "stream cut after" in done.stderr and "max_tokens 8" in done.stderr, done.stderr
    assert "does it honour max_tokens?" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "run.json").exists()  # nothing was measured
