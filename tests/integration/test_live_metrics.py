"""Live Prometheus metrics of a run (`loadkit run --metrics-port`,
loadkit/run/exporter.py): scraped over real loopback while the run goes,
and at its end equal to run.json's counts; the Grafana dashboard queries only
what a scrape holds; a non-loopback address needs a token."""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, TypedDict

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from loadkit.outputs import REPORTS
from loadkit.run.execute import RunOptions, execute
from loadkit.run.exporter import BUCKETS_S, LiveMetrics
from loadkit.run.metrics_server import MetricsServer
from loadkit.workload.loader import load_workload
from support.run import ROOT, cli

DASHBOARD = ROOT / "examples" / "grafana-loadkit.json"


def scrape(url: str, token: str | None = None) -> list[Sample]:
    """Every sample of one scrape (prometheus_client's own parser)."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                 if token else {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        text = resp.read().decode()
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The sum of `name` over the samples whose labels include `labels`."""
    return sum(s.value for s in samples if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


def two_tenants(duration: float = 5) -> dict:
    """Two tenants of streaming chat on the embedded simulator, with 5xx
    answers (a fault) and drops (an in-flight cap under the offered load)."""
    return {
        "name": "live-metrics", "seed": 11, "interval": "500ms",
        "phases": [{"name": "warm", "duration": 1, "warmup": True},
                   {"name": "main", "duration": duration}],
        "tenants": [{"name": "alpha", "arrival": {"process": "poisson", "rate": 60},
                     "slos": ["error_rate < 50%"]},
                    {"name": "beta", "arrival": {"process": "poisson", "rate": 30},
                     "slos": ["error_rate < 50%"]}],
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "prompt_tokens": 32, "max_tokens": 16}],
        "simulator": {"ttft_ms": 20, "itl_ms": 5,
                      "faults": [{"kind": "error", "rate": 0.1}]},
        "client": {"max_in_flight": 6, "probe": False},
        "slos": ["ttft p99 < 2s", "error_rate < 50%", "latency p90 < 5s in every 2s window"],
    }


class Scraper(threading.Thread):
    """Scrapes `url` until stopped, keeping each scrape (bounded by the run)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.scrapes: list[list[Sample]] = []
        self.failures: list[Exception] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                self.scrapes.append(scrape(self.url))
            except (OSError, urllib.error.URLError) as exc:
                self.failures.append(exc)


class LiveRun(TypedDict):
    """The live_run fixture."""

    during: list[list[Sample]]  # the scrapes taken while the run went
    failures: list[Exception]  # scrapes that failed
    final: list[Sample]  # the scrape after the run
    result: dict[str, Any]  # run.json
    metrics: LiveMetrics


@pytest.fixture(scope="module")
def live_run(tmp_path_factory: pytest.TempPathFactory) -> LiveRun:
    """One in-process run with its exporter served on loopback: the scrapes
    taken while it went, the final scrape, run.json, and the exporter."""
    tmp = tmp_path_factory.mktemp("live")
    path = tmp / "w.yaml"
    path.write_text(yaml.safe_dump(two_tenants()))
    metrics = LiveMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    scraper = Scraper(server.url)
    scraper.start()
    try:
        _, out = execute(load_workload(path),
                         RunOptions(out_dir=tmp / "out", reports=REPORTS - {"html"}, quiet_gc=True,
                                    metrics=metrics))
        scraper.done.set()
        scraper.join(timeout=30)
        final = scrape(server.url)  # after the run: the final interval and verdicts
    finally:
        scraper.done.set()
        metrics.close()
        server.close()
    return {"during": scraper.scrapes, "failures": scraper.failures, "final": final,
            "result": json.loads((out / "run.json").read_text()), "metrics": metrics}


@pytest.mark.slow
def test_scraped_during_the_run(live_run: LiveRun) -> None:
    during, final = live_run["during"], live_run["final"]
    assert not live_run["failures"], live_run["failures"][:3]
    total = value(final, "loadkit_requests_total")
    mid = [s for s in during if value(s, "loadkit_run_finished") == 0
           and 0 < value(s, "loadkit_requests_total") < total]
    assert mid, f"no scrape caught the run going ({len(during)} scrapes)"
    # Counters only grow, scrape after scrape.
    seen = [value(s, "loadkit_requests_total") for s in during]
    assert seen == sorted(seen)
    # Latency is a Prometheus histogram with the fixed buckets, cumulative.
    buckets = [s for s in mid[-1] if s.name == "loadkit_latency_seconds_bucket"
               and s.labels["tenant"] == "alpha"]
    assert [s.labels["le"] for s in buckets][-1] == "+Inf"
    assert len(buckets) == len(BUCKETS_S) + 1
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and counts[-1] > 0


@pytest.mark.slow
def test_final_counters_equal_run_json(live_run: LiveRun) -> None:
    final, result = live_run["final"], live_run["result"]
    assert value(final, "loadkit_run_finished") == 1
    counts = result["counts"]
    assert counts["completed"] > 0 and counts["errors"] > 0 and counts["dropped"] > 0, counts

    def measured(outcome: str | None = None, **labels: str) -> float:
        return sum(s.value for s in final if s.name == "loadkit_requests_total"
                   and s.labels["phase"] == "main"
                   and (outcome is None or s.labels["outcome"] == outcome)
                   and all(s.labels[k] == v for k, v in labels.items()))

    errors = sum(s.value for s in final if s.name == "loadkit_requests_total"
                 and s.labels["phase"] == "main"
                 and s.labels["outcome"] not in ("completed", "dropped"))
    assert measured("completed") == counts["completed"]
    assert errors == counts["errors"]
    assert measured("dropped") == counts["dropped"]
    assert value(final, "loadkit_requests_total", phase="warm", outcome="completed") \
        == counts["warmup_completed"]
    # Errors by kind, as run.json names them.
    by_kind: Counter = Counter()
    for s in final:
        if s.name == "loadkit_requests_total" and s.labels["phase"] == "main" \
                and s.labels["outcome"] not in ("completed", "dropped"):
            by_kind[s.labels["outcome"]] += int(s.value)
    assert by_kind == Counter({k: n for k, n in result["errors"]["by_kind"].items() if n})
    # Per tenant: completed (the latency series' count) and every attempt (the
    # tenant's error_rate SLO counts completed + errors + dropped).
    slos = {s["name"]: s for s in result["slos"]}
    for tenant in ("alpha", "beta"):
        completed = result["series"]["latency"][f"tenant:{tenant}"]["count"]
        assert measured("completed", tenant=tenant) == completed
        attempts = slos[f"error_rate < 50% [tenant:{tenant}]"]["samples"]
        assert measured(tenant=tenant) == attempts
    # The histograms hold every answer, warm-up included.
    assert value(final, "loadkit_latency_seconds_count") \
        == counts["completed"] + counts["warmup_completed"]
    assert value(final, "loadkit_in_flight") == 0
    assert value(final, "loadkit_intervals_total") == len(result["timeseries"])
    assert value(final, "loadkit_output_tokens_total", phase="main") \
        == result["tokens"]["output_total"]


@pytest.mark.slow
def test_slo_states_end_as_the_verdicts(live_run: LiveRun) -> None:
    final, result = live_run["final"], live_run["result"]
    states = {s.labels["slo"]: s.value for s in final if s.name == "loadkit_slo_state"}
    code = {"pass": 1.0, "fail": 0.0, "inconclusive": -1.0}
    assert states == {s["name"]: code[s["verdict"]] for s in result["slos"]}
    # While the run went, the windowed SLO showed its windows, the others
    # their scope so far.
    judged = [s for s in live_run["during"] if value(s, "loadkit_run_finished") == 0
              and any(x.name == "loadkit_slo_state" for x in s)]
    assert judged, "no SLO state was published while the run went"
    names = {x.labels["slo"] for s in judged for x in s if x.name == "loadkit_slo_state"}
    assert "latency p90 < 5s in every 2s window [all]" in names
    assert "error_rate < 50% [all]" in names


@pytest.mark.slow
def test_listener_cost_is_measured(live_run: LiveRun) -> None:
    costs = live_run["metrics"].update_ns
    assert len(costs) == len(live_run["result"]["timeseries"])
    final = live_run["final"]
    assert value(final, "loadkit_exporter_update_max_seconds") * 1e9 >= max(costs) - 1


@pytest.mark.slow
def test_dashboard_queries_only_exported_metrics(live_run: LiveRun) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("definition")]
    queried = {name for e in exprs
               for name in re.findall(r"\b(?:loadkit|process)_[a-z_:]+", e)}
    assert len(queried) >= 15, queried
    names = {s.name for s in live_run["final"]}
    assert queried <= names, sorted(queried - names)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_token_is_required_when_set() -> None:
    metrics = LiveMetrics()
    server = MetricsServer(metrics, "127.0.0.1", 0, token="s3cret").start()
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(server.url)
        assert refused.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as wrong:
            scrape(server.url, token="nope")
        assert wrong.value.code == 401
        assert any(s.name == "loadkit_run_finished" for s in scrape(server.url, "s3cret"))
    finally:
        server.close()


def test_non_loopback_without_token_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli("run", "workloads/steady.yaml", "--metrics-host", "0.0.0.0",
               "--metrics-port", "0", "--out", str(out), "-q")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to serve live metrics on non-loopback address '0.0.0.0' without a " \
           "token" in done.stderr
    assert "LOADKIT_RUN_METRICS_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()  # refused before anything was run


@pytest.mark.slow
def test_cli_serves_until_the_verdict_and_lingers(tmp_path: Path) -> None:
    """The real CLI: the URL on stderr, a scrape while it runs, the final
    figures served after the verdict (--metrics-linger) and equal to run.json;
    SIGTERM ends the wait, and the run's exit code stands."""
    path = tmp_path / "w.yaml"
    spec = two_tenants(duration=3)
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "loadkit", "run", str(path), "--out", str(out),
                             "-q", "--metrics-port", "0", "--metrics-linger", "120s"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    try:
        url, lines = None, []
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stderr], [], [], 1)
            line = proc.stderr.readline() if ready else ""
            lines.append(line)
            if match := re.search(r"live metrics at (http://\S+/metrics)", line):
                url = match.group(1)
            assert proc.poll() is None or line, "".join(lines)
        assert url, "".join(lines)
        # It serves from before the clock starts until the verdict, then lingers.
        scrapes = []
        while time.monotonic() < deadline:
            samples = scrape(url)
            scrapes.append(samples)
            if value(samples, "loadkit_run_finished") == 1:
                break
            time.sleep(0.1)
        final = scrapes[-1]
        assert value(final, "loadkit_run_finished") == 1
        assert any(value(s, "loadkit_run_finished") == 0 and value(s, "loadkit_requests_total")
                   for s in scrapes), "no scrape caught the run going"
        # The final figures are in before the verdict; wait for the linger line.
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "serving the final metrics" in line or not line:
                break
        assert "serving the final metrics" in lines[-1], "".join(lines)
        result = json.loads((out / "run.json").read_text())
        assert value(scrape(url), "loadkit_requests_total", phase="main", outcome="completed") \
            == result["counts"]["completed"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    expected = {"pass": 0, "fail": 1, "inconclusive": 1}[result["verdict"]] \
        if result["trusted"] else 3
    assert proc.returncode == expected, proc.stdout.read() if proc.stdout else ""

