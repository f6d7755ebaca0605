"""Every shipped workload runs, shortened, against the simulator and gives a verdict;
malformed profiles exit 2 naming file, line and key (or trace row)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.run import ROOT, cli

# time scale per workload: each run lasts about 5-7 s; a trace replay is cut
# to its first seconds instead (compressed whole, it sends 1,236 requests)
SHIPPED = {"steady.yaml": "0.15", "diurnal.yaml": "0.01", "bursty.yaml": "0.05",
           "multi-tenant.yaml": "0.045", "soak.yaml": "0.0015", "cold-start.yaml": "0.05",
           "trace-replay.yaml": "0.1", "mooncake-replay.yaml": "0.25",
           "chat-sessions.yaml": "0.05", "capacity.yaml": "0.25", "reasoning.yaml": "0.1",
           "agent.yaml": "0.06", "anthropic.yaml": "0.1", "impatient.yaml": "0.06",
           "triton-grpc.yaml": "0.6", "vision-chat.yaml": "0.45", "rag.yaml": "0.45"}


def test_every_shipped_workload_is_covered() -> None:
    assert sorted(p.name for p in (ROOT / "workloads").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_workload_runs_and_gives_a_verdict(tmp_path: Path, name: str) -> None:
    """What is checked: a verdict on every SLO, every output, no errors. Not
    the generator's health on this machine (compressed in time, some of these
    send hundreds of streams a second on two shared cores): a saturated run
    still exits 3, as documented, and the generator's lateness is tested with
    bounds of its own elsewhere."""
    out = tmp_path / "out"
    cut = ["--duration", "4s"] if name.endswith("-replay.yaml") else []
    proc = cli("run", str(ROOT / "workloads" / name), "--time-scale", SHIPPED[name], *cut,
               "--out", str(out), "-q")
    result = json.loads((out / "run.json").read_text())
    saturated_only = not result["trusted"] and all(
        r.startswith("generator saturated") for r in result["untrusted_reasons"])
    assert proc.returncode in (0, 1) or (proc.returncode == 3 and saturated_only), proc.stderr
    assert result["verdict"] in ("pass", "fail", "inconclusive") and result["slos"]
    assert all(s["verdict"] in ("pass", "fail", "inconclusive") for s in result["slos"])
    for name_ in ("report.html", "junit.xml", "summary.md", "latency.hlog"):
        assert (out / name_).stat().st_size > 0, name_
    assert result["counts"]["completed"] > 20 and result["counts"]["errors"] == 0
    if name == "multi-tenant.yaml":
        iso = result["isolation"]
        assert set(iso) == {"steady-co", "burst-inc"}
        assert iso["steady-co"]["spike_phases"] == ["spike"]
        assert iso["steady-co"]["ratio"] is not None and iso["steady-co"]["ratio"] > 0
        assert iso["burst-inc"]["ratio"] is None  # nobody else spikes
        assert any(s["metric"] == "isolation_ratio" for s in result["slos"])
    if name == "chat-sessions.yaml":
        assert result["sessions"]["completed"] > 0
        assert result["series"]["latency"]["scenario:chat:later"]["count"] > 0
    if name == "impatient.yaml":  # clients left, and the simulator stopped for them
        assert sum(result["counts"]["abandoned"].values()) > 0
        # Tokens generated for nobody: a few steps' worth each where the client
        # is slow to read (a busy worker), ~200 each if the server ignored them.
        assert result["reclaim"]["zombie_tokens"] <= 10 * result["reclaim"]["abandoned"]
    if name == "vision-chat.yaml":  # what was sent, described: never the images
        media = result["media"]["ask-about-photos"]
        assert media["images"] >= media["requests"] > 20 and media["distinct_images"] > 1
    if name == "rag.yaml":  # each stage judged apart; per-document latency of the rerank
        assert result["series"]["latency_per_doc"]["tenant:rerank"]["count"] > 20
    if name == "mooncake-replay.yaml":  # shared prefixes hit the simulator's cache
        assert result["tokens"]["cached_total"] > 0
        assert result["tokens"]["itl_source"].get("usage", 0) > 0


@pytest.mark.slow
def test_slo_file_joins_the_workload(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("run", str(ROOT / "workloads" / "multi-tenant.yaml"), "--time-scale", "0.04",
               "--slo", str(ROOT / "workloads" / "slo" / "multi-tenant.yaml"), "--out", str(out),
               "-q", "--allow-saturated")  # the SLOs' scopes are the point, not this host's lateness
    assert proc.returncode in (0, 1), proc.stderr
    scopes = {(s["text"], s["scope"]) for s in json.loads((out / "run.json").read_text())["slos"]}
    assert ("latency p99 < 5s", "tenant:burst-inc") in scopes
    assert ("error_rate < 2%", "phase:spike") in scopes


def test_plan_prints_the_schedule_without_sending() -> None:
    proc = cli("plan", str(ROOT / "workloads" / "multi-tenant.yaml"))
    assert proc.returncode == 0, proc.stderr
    assert "spike" in proc.stdout and "burst-inc" in proc.stdout and "rate per second" in proc.stdout
    assert proc.stdout == cli("plan", str(ROOT / "workloads" / "multi-tenant.yaml")).stdout


@pytest.mark.parametrize("text,fragment", [
    ("duration: 5s\nscenarios: [{name: c, kind: http}]\narrival:\n  process: gamma\n"
     "  rate: -2\n  cv: 1\n", "w.yaml:5: arrival.rate: must be > 0"),
    ("duration: 5s\nscenarios: [{name: c, kind: http}]\narrival:\n  process: sawtooth\n",
     "w.yaml:4: arrival.process: must be one of"),
    ("duration: 5s\nscenarios: [{name: c, kind: http}]\ntenants:\n  - name: a\n"
     "    arrival: {rate: 1}\n    phases: {spike: {rate: 5}}\n",
     "w.yaml:6: tenants[0].phases.spike: tenant 'a' names unknown phase 'spike'"),
    ("duration: 5s\nscenarios:\n  - name: c\n    kind: openai-chat\n"
     "    max_tokens: {dist: lognormal, median: 0}\narrival: {rate: 1}\n",
     "w.yaml:5: scenarios[0].max_tokens"),
])
def test_malformed_profiles_exit_2(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "w.yaml").write_text(text)
    proc = cli("run", str(tmp_path / "w.yaml"))
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_trace_row_names_its_row(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                    "2023-11-16 18:15:46.1,10,2\n2023-11-16 18:15:47.1,ten,2\n")
    (tmp_path / "w.yaml").write_text("duration: 5s\nscenarios: [{name: c, kind: openai-chat}]\n"
                                     "arrival: {process: trace, path: t.csv}\n")
    proc = cli("run", str(tmp_path / "w.yaml"))
    assert proc.returncode == 2
    assert "t.csv:3: bad prompt tokens 'ten'" in proc.stderr, proc.stderr
