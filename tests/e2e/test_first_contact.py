"""First contact with a real server: the model it serves, a probe that fails
fast on a refusal, a run stopped when the target starts refusing, and the
reasons where people look (console, summary.md, junit.xml)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.engine.probe import TRIES
from support.run import ROOT, StartServer, cli

STEADY = str(ROOT / "workloads" / "steady.yaml")

# Runs whose exit code is the point: the generator's own health (lateness
# within its 10-ms bound, a wall-clock bound this machine may miss when busy)
# is tested on its own (integration/test_faults.py), so it must not turn
# their exit code into 3 here.
ANY_HOST = "--allow-saturated"


def chat_workload(tmp_path: Path, url: str, **extra: Any) -> str:
    spec = {"name": "contact", "target": url, "duration": "20s", "warmup": 0,
            "arrival": {"process": "constant", "rate": 40},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "max_tokens": 4}],
            "slos": ["error_rate < 1%"], **extra}
    if "tenants" in extra:
        del spec["arrival"]
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def asked_models(url: str) -> list[str]:
    with urllib.request.urlopen(url + "/log") as resp:
        return json.load(resp)


@pytest.mark.slow
def test_shipped_workload_uses_the_one_served_model_without_edits(server: StartServer,
                                                                  tmp_path: Path) -> None:
    with server("openai", "--models", "served-model") as url:
        proc = cli("run", STEADY, "--target", url, "--duration", "3s", "--inconclusive",
                   "pass", "--out", str(tmp_path / "out"), ANY_HOST)
        asked = asked_models(url)
    assert proc.returncode == 0, proc.stderr
    assert "model served-model (from the target's /v1/models)" in proc.stderr
    result = json.loads((tmp_path / "out" / "run.json").read_text())
    assert result["counts"]["errors"] == 0 and result["counts"]["completed"] > 50
    assert set(asked) == {"served-model"}
    # --model wins over discovery, and a model the server lacks is refused up front
    with server("openai", "--models", "served-model") as url:
        proc = cli("run", STEADY, "--target", url, "--model", "other", "--duration", "3s")
    assert proc.returncode == 3, proc.stderr
    assert "The model `other` does not exist." in proc.stderr and "--model NAME" in proc.stderr


def test_a_refused_key_on_the_model_list_exits_3_with_the_servers_words(server: StartServer,
                                                                        tmp_path: Path) -> None:
    """vLLM with --api-key protects /v1/models too: a wrong key is the target
    refusing it (exit 3, where the key comes from), not a model to name."""
    with server("openai", "--key", "right", "--protect-models") as url:
        path = chat_workload(tmp_path, url, tenants=[
            {"name": "acme", "arrival": {"process": "constant", "rate": 40},
             "api_key": "${CONTACT_KEY}"}])
        env = {**os.environ, "CONTACT_KEY": "wrong"}
        started = time.monotonic()
        proc = cli("run", path, "--out", str(tmp_path / "out"), env=env)
        took = time.monotonic() - started
    assert proc.returncode == 3 and took < 5, (proc.returncode, took, proc.stderr)
    assert "Invalid API key provided." in proc.stderr and "tenants[0].api_key" in proc.stderr
    assert "--model NAME" not in proc.stderr and "Traceback" not in proc.stderr


def test_several_served_models_exit_2_naming_them(server: StartServer, tmp_path: Path) -> None:
    with server("openai", "--models", "llama-3-8b,qwen-2-7b") as url:
        proc = cli("run", STEADY, "--target", url, "--duration", "3s")
    assert proc.returncode == 2, proc.stderr
    assert "llama-3-8b" in proc.stderr and "qwen-2-7b" in proc.stderr
    assert "--model NAME" in proc.stderr and "Traceback" not in proc.stderr


def test_a_target_ending_in_v1_is_told_to_drop_it(server: StartServer) -> None:
    """loadkit adds /v1/... itself: http://host/v1 asks for /v1/v1/models,
    a 404, and the message says which part of the target to drop, with or
    without a model named (then the probe's 404 says it); never with the
    target's credentials."""
    with server("openai") as url:
        target = url.replace("http://", "http://user:s3cret@") + "/v1"
        for model, code in (([], 2), (["--model", "m"], 3)):  # the model list's, the probe's
            proc = cli("run", STEADY, "--target", target, "--duration", "2s", *model)
            assert proc.returncode == code, proc.stderr
            assert f"the target ends in /v1, and loadkit adds /v1/... itself: drop it " \
                   f"(--target {url})" in proc.stderr, proc.stderr
            assert "s3cret" not in proc.stderr


@pytest.mark.slow
def test_a_target_that_never_finishes_its_answers_does_not_hold_first_contact(
        server: StartServer, tmp_path: Path) -> None:
    """GET / and GET /v1/models answer 200, then a byte every 0.2 s without
    end (each read quick, so httpx's per-read timeout never fires; first
    contact once waited for ever): the status line is all the reachability
    check reads, and the model list is cut at client.timeouts.total (exit
    3), however slow the host (the subprocess's limit is the test's only
    clock)."""
    with server("faults") as url:
        path = chat_workload(tmp_path, url + "/trickle",
                             client={"timeouts": {"first_byte": "1s", "total": "2s"}})
        proc = cli("run", path, "--duration", "2s", process=True, timeout=90)
    assert proc.returncode == 3, proc.stderr
    assert "/trickle/v1/models: ReadTimeout: the answer was not whole within 2 s" \
        in proc.stderr, proc.stderr


@pytest.mark.slow
def test_a_passing_rate_limit_is_waited_out_and_a_lasting_one_says_so(
        server: StartServer, tmp_path: Path) -> None:
    """A 429 may pass: the probe's next tries wait 1 s, then 2 s. A server
    that limits its first 0.5 s is then measured; one that limits for ever
    stops the run (exit 3) with what a 429 means, not a workload to check."""
    for limited_for, code in ((0.5, 0), (3600.0, 3)):
        with server("openai", "--limited-for", str(limited_for)) as url:
            proc = cli("run", chat_workload(tmp_path, url, duration="2s"), "--model",
                       "served-model", "-q", ANY_HOST, "--out", str(tmp_path / f"o{code}"))
        assert proc.returncode == code, proc.stderr
    assert "the server rate-limits even one request at a time (3 tries over 3 s)" \
        in proc.stderr, proc.stderr


def test_a_target_with_a_query_is_refused_before_anything_is_sent() -> None:
    proc = cli("run", STEADY, "--target", "http://127.0.0.1:9/?api-version=1")
    assert proc.returncode == 2
    assert "--target: must be a base URL such as http://127.0.0.1:8000, without a query" \
        in proc.stderr, proc.stderr


@pytest.mark.parametrize("transport", ["lean", "aiohttp"])
def test_a_refusal_followed_by_a_closed_connection_still_stops_the_run(
        server: StartServer, tmp_path: Path, transport: str) -> None:
    """A server (or proxy) that closes the connection after its 401, without
    `Connection: close`: the probe's next try must not land on that dead
    connection and read the refusal as a mere reset (exit 1, every request
    http_4xx); it is still a refusal, before the clock (exit 3)."""
    with server("openai", "--key", "right", "--close-on-refusal") as url:
        path = chat_workload(tmp_path, url, client={"transport": transport}, tenants=[
            {"name": "acme", "arrival": {"process": "constant", "rate": 40},
             "api_key": "${CONTACT_KEY}"}])
        proc = cli("run", path, "--out", str(tmp_path / "out"),
                   env={**os.environ, "CONTACT_KEY": "wrong"})
        assert len(asked_models(url)) == TRIES  # every try reached the server
    assert proc.returncode == 3, proc.stderr
    assert "Invalid API key provided." in proc.stderr and "tenants[0].api_key" in proc.stderr
    assert not (tmp_path / "out" / "run.json").exists()


def test_a_server_that_does_not_serve_the_request_at_all_is_a_refusal(
        server: StartServer, tmp_path: Path) -> None:
    """A 501 (a static file server's answer to a POST) is as lasting as a
    4xx: the probe stops the run (exit 3), where a 503 (a server warming up)
    is measured. An audit saw a plain `python -m http.server` run to exit 0."""
    def spec(path: str) -> str:
        doc = {"name": "plain", "target": url, "duration": "1s", "warmup": 0,
               "arrival": {"process": "constant", "rate": 5},
               "scenarios": [{"name": "s", "kind": "http", "method": "POST", "path": path}],
               "client": {"fail_fast": False}}
        (tmp_path / "w.yaml").write_text(yaml.safe_dump(doc))
        return str(tmp_path / "w.yaml")

    with server("faults") as url:
        refused = cli("run", spec("/status/501"), "--out", str(tmp_path / "a"), ANY_HOST)
        measured = cli("run", spec("/status/503"), "--out", str(tmp_path / "b"), ANY_HOST)
    assert refused.returncode == 3, refused.stderr
    assert "HTTP 501" in refused.stderr and "does not serve this request at all" in refused.stderr
    assert not (tmp_path / "a" / "run.json").exists()
    assert measured.returncode != 2 and "Traceback" not in measured.stderr
    errors = json.loads((tmp_path / "b" / "run.json").read_text())["errors"]["by_kind"]
    assert errors["http_5xx"] == 5, errors


@pytest.mark.slow
def test_a_refused_key_stops_before_the_clock_starts(server: StartServer, tmp_path: Path) -> None:
    """Every request would be a 401: the probe says so (with the server's words and
    what to check) and nothing is measured or written as a run."""
    with server("openai", "--key", "right") as url:
        path = chat_workload(tmp_path, url, tenants=[
            {"name": "acme", "arrival": {"process": "constant", "rate": 40},
             "api_key": "${CONTACT_KEY}"}])
        env = {**os.environ, "CONTACT_KEY": "wrong"}
        proc = cli("run", path, "--out", str(tmp_path / "out"), env=env)
        assert len(asked_models(url)) == TRIES  # the probe's tries, then nothing
    assert proc.returncode == 3, proc.stderr
    assert "Invalid API key provided." in proc.stderr
    assert "tenants[0].api_key" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "run.json").exists()
    # without the probe, the run itself finds out, stops, and keeps what it measured
    with server("openai", "--key", "right") as url:
        proc = cli("run", chat_workload(tmp_path, url, tenants=[
            {"name": "acme", "arrival": {"process": "constant", "rate": 40},
             "api_key": "${CONTACT_KEY}"}]), "--no-probe", "--out", str(tmp_path / "o2"),
            env=env)
    assert proc.returncode == 3 and "the target refuses the load" in proc.stderr
    assert json.loads((tmp_path / "o2" / "run.json").read_text())["counts"]["errors"] >= 100


@pytest.mark.slow
def test_a_target_that_starts_refusing_stops_the_run(server: StartServer, tmp_path: Path) -> None:
    """403s from 3 s on: the run stops well before its 20 s, exit 3, and the
    console, summary.md and junit.xml say when and why."""
    # --no-probe: the server counts its 3 s from the first chat request, which
    # is then the run's first arrival (a probe, sent before the clock starts,
    # would move the refusals earlier by however long the start took).
    with server("openai", "--refuse-after", "3") as url:
        proc = cli("run", chat_workload(tmp_path, url), "--no-probe",
                   "--out", str(tmp_path / "out"))
    assert proc.returncode == 3, proc.stderr
    out = tmp_path / "out"
    result = json.loads((out / "run.json").read_text())
    c = result["counts"]
    assert c["completed"] + c["errors"] < 20 * 40 / 2  # stopped before half the schedule
    assert c["completed"] >= 3 * 40 * 0.9 and c["errors"] > 50
    reason = " ".join(result["untrusted_reasons"])
    assert "the target refuses the load" in reason and "quota" in reason
    assert "http_4xx" in proc.stderr and "You exceeded your current quota." in proc.stderr
    summary = (out / "summary.md").read_text()
    assert "| http_4xx |" in summary and "You exceeded your current quota." in summary
    junit = (out / "junit.xml").read_text()
    assert "errors: http_4xx" in junit and "quota" in junit
    # switched off, the same run goes to its end
    with server("openai", "--refuse-after", "1") as url:
        proc = cli("run", chat_workload(tmp_path, url, duration="4s"), "--no-fail-fast",
                   "--out", str(tmp_path / "out2"), ANY_HOST)
    result = json.loads((tmp_path / "out2" / "run.json").read_text())
    assert proc.returncode == 1 and result["counts"]["completed"] + \
        result["counts"]["errors"] == 4 * 40
