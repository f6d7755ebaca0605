"""Clients that leave, against the simulator: the share that leaves for
impatience is what the patience and TTFT distributions predict; a client
that reads 10 tokens reads exactly 10; whether the server stops generating
for them (zombie tokens) is the simulator's own count; and a workload whose
clients never leave is today's, request for request."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from typing import Any

import pytest

from support.recording import recording_sim
from support.run import RunWorkload

pytestmark = [pytest.mark.slow]


def spec(abandon: dict | None, simulator: dict, rate: float = 100, duration: float = 3,
         max_tokens: int = 4, slos: list[str] | None = None) -> dict[str, Any]:
    scenario: dict[str, Any] = {"name": "chat", "kind": "openai-chat", "prompt_tokens": 8,
                                "max_tokens": max_tokens}
    if abandon is not None:
        scenario["abandon"] = abandon
    return {"name": "leave", "duration": duration, "warmup": 0,
            "arrival": {"process": "constant", "rate": rate}, "simulator": simulator,
            "scenarios": [scenario], "slos": slos or ["error_rate < 5%"]}


def last(result: dict, metric: str) -> float:
    return sum(s["points"][-1][1] for s in result["telemetry"]["series"].values()
               if s["metric"].removeprefix("prom.") == metric)


@pytest.mark.timing
def test_the_impatient_share_is_what_patience_and_ttft_predict(run: RunWorkload) -> None:
    """Exponential patience of mean 50 ms against a TTFT of 40 ms: a client
    leaves when its patience runs out first, P = 1 - exp(-TTFT / 50 ms)."""
    result, _ = run(spec({"patience": {"dist": "exponential", "mean": "50ms"}},
                         {"ttft_ms": 40, "itl_ms": 1}, slos=["abandon_rate < 80%"]),
                    allow_saturated=True)
    c = result["counts"]
    left, n = c["abandoned"].get("patience", 0), c["completed"] + c["abandoned"]["patience"]
    ttft = result["series"]["ttft"]["all"]["p50"]  # the stayers' (the leavers' is the same)
    p = 1 - math.exp(-ttft / 50)
    sigma = math.sqrt(p * (1 - p) / n)
    print(f"{left} of {n} left ({left / n:.3f}); predicted {p:.3f} from TTFT {ttft:.1f} ms")
    assert c["errors"] == 0 and n >= 280, result["errors"]
    assert abs(left / n - p) <= 4 * sigma
    # Leaving is at the patience instant: never before it, and before the first
    # token (the stayers' slowest: one client's TTFT can be 2 ms over the median).
    assert result["series"]["abandon_time"]["all"]["max"] <= \
        result["series"]["ttft"]["all"]["max"] + 1
    assert [s["observed"] for s in result["slos"]] == [pytest.approx(left / n)]


@pytest.mark.timing  # a step's worth of zombie tokens each, if the client reads in pace:
# beside four busy workers 40 clients left 46
def test_a_client_that_reads_10_tokens_reads_exactly_10(run: RunWorkload) -> None:
    result, _ = run(spec({"read_tokens": 10}, {"ttft_ms": 5, "itl_ms": 2}, rate=20,
                         duration=2, max_tokens=100))
    c = result["counts"]
    assert c["completed"] == 0 and c["abandoned"] == {"read_tokens": c["abandoned"]["read_tokens"]}
    assert c["abandoned"]["read_tokens"] >= 38 and c["tokens_read"] == 10 * c["abandoned"][
        "read_tokens"]
    # The server stopped at once: it generated what was read, and a step's worth at most.
    assert last(result, "loadkit_sim_tokens_after_disconnect_total") <= \
        c["abandoned"]["read_tokens"]
    assert result["reclaim"]["zombie_tokens"] <= c["abandoned"]["read_tokens"]


@pytest.mark.timing  # a step's worth of zombie tokens each, as above
@pytest.mark.parametrize("ignores", [False, True])
def test_zombie_tokens_are_the_server_s_own_count(run: RunWorkload, ignores: bool) -> None:
    """Each client reads 10 of 60 tokens and leaves: a server that honours the
    disconnect generates ~nothing more; one that ignores it generates the
    other 50 for nobody, and `zombie_share < 1%` fails."""
    faults = [{"kind": "ignore_disconnect", "start": 0}] if ignores else []
    result, _ = run({**spec({"read_tokens": 10}, {"ttft_ms": 5, "itl_ms": 2, "faults": faults},
                            rate=20, duration=2, max_tokens=60,
                            slos=["zombie_share < 1%"]),
                     "client": {"drain": "2s"}})
    r, left = result["reclaim"], result["counts"]["abandoned"]["read_tokens"]
    truth = last(result, "loadkit_sim_tokens_after_disconnect_total")
    print(f"ignores={ignores}: zombie {r['zombie_tokens']}, simulator's count {truth}")
    if ignores:
        # 50 more tokens each, but for the last requests' tail after the last scrape
        assert 0.9 * 50 * left <= truth <= 50 * left + left
        assert r["zombie_tokens"] == pytest.approx(truth, rel=0.05)
        assert [s["verdict"] for s in result["slos"]] == ["fail"]
    else:
        assert truth <= left and r["zombie_tokens"] <= left
        assert [s["verdict"] for s in result["slos"]] == ["pass"]


def test_clients_that_never_leave_change_nothing(run: RunWorkload) -> None:
    sim = {"ttft_ms": 5, "itl_ms": 1}
    plain, _ = run(spec(None, sim, rate=50, duration=2))
    never, _ = run(spec({"share": 0, "patience": "1ms"}, sim, rate=50, duration=2))
    assert plain["counts"] == never["counts"]
    assert plain["tokens"] == never["tokens"]
    assert {m: s["all"]["count"] for m, s in plain["series"].items()} == \
        {m: s["all"]["count"] for m, s in never["series"].items()}
    assert never["reclaim"] is None


@pytest.mark.timing  # the gaps between the proxy's arrivals are timings
def test_a_client_that_left_comes_back_with_the_same_request(run: RunWorkload) -> None:
    """Patience 5 ms against a TTFT of 40 ms: every try leaves, and each first
    try comes back once, 50 ms after leaving, with the very bytes it sent
    (the server sees each prompt at most twice), counted apart as `chat:retry`."""
    abandon = {"patience": "5ms", "retry": {"after": "50ms", "max": 1}}
    with recording_sim(ttft_ms=40, itl_ms=1) as rec:
        result, _ = run({**spec(abandon, {}, rate=20, duration=2), "target": rec.url})
        posts = rec.posts()
    c = result["counts"]
    left = c["abandoned"]["patience"]
    # Every first try left and came back; every retry left too, but one may
    # have been in flight when the run ended (its schedule's last arrival).
    assert c["retried"] >= 36 and abs((left - c["retried"]) - c["retried"]) <= 1
    assert result["series"]["abandon_time"]["scenario:chat:retry"]["count"] in \
        (c["retried"], c["retried"] - 1)
    bodies = Counter(json.dumps(e.body, sort_keys=True) for e in posts)
    # A try that leaves after 5 ms may close before the proxy has read it: most
    # retries, not all, are seen twice; none more.
    assert max(bodies.values()) == 2
    assert sum(n == 2 for n in bodies.values()) >= 0.9 * c["retried"]
    again = sorted(posts, key=lambda e: e.arrived)
    firsts: dict[str, float] = {}
    for e in again:
        key = json.dumps(e.body, sort_keys=True)
        if key in firsts:  # 5 ms of patience, then 50 ms away: a retry at once would
            # arrive ~5 ms after; the first try's own way to the proxy may have
            # taken a few ms on a busy machine, so 40 of the 55 ms are asked.
            assert e.arrived - firsts[key] >= 0.040
        firsts.setdefault(key, e.arrived)


@pytest.mark.timing
def test_the_server_sees_each_client_leave_at_its_rule_s_instant(run: RunWorkload) -> None:
    """The simulator's own log of hang-ups: a 20-ms patience against a 40-ms
    TTFT closes each connection 20 ms after it was due (within 2 ms); a
    client reading 10 tokens of 100 closes after the 10th (one more may be on
    its way)."""
    with recording_sim(proxied=False, ttft_ms=40, itl_ms=2) as rec:
        impatient, _ = run({**spec({"patience": "20ms"}, {}, rate=20, duration=2),
                            "target": rec.url})
        assert rec.sim is not None
        waited = [1000 * (d.noticed - d.arrival) for d in rec.sim.disconnects]
        rec.sim.disconnects.clear()
        skim, _ = run({**spec({"read_tokens": 10}, {}, rate=20, duration=2, max_tokens=100),
                       "target": rec.url})
        # (tokens sent, tokens due by the instant the server noticed the close)
        read = [(d.sent, 1 + int((d.noticed - d.arrival - 0.040) / 0.002))
                for d in rec.sim.disconnects]
    assert len(waited) == impatient["counts"]["abandoned"]["patience"] >= 38
    print(f"noticed after {min(waited):.2f} to {max(waited):.2f} ms")
    # The client leaves at its rule's instant (its own clock: the median
    # within 1 ms of 20). The patience runs from the request's intended
    # instant, the server's count from its arrival: a send released late (the
    # generator's own lateness, which its health reports) arrives that much
    # nearer the leaving; and the server notices the close within 1 ms of the
    # client's leaving at the median, nearly always within 2.
    left = impatient["series"]["abandon_time"]["all"]["p50"]
    assert left == pytest.approx(20, abs=1)
    early = impatient["health"]["lateness_p99_ms"]
    assert left - early - 1 <= statistics.median(waited) <= left + 1, (left, early, waited)
    assert sum(left - early - 2 <= w <= left + 2 for w in waited) >= 0.9 * len(waited), \
        (left, early, waited)
    assert len(read) == skim["counts"]["abandoned"]["read_tokens"] >= 38
    # The client read its 10 tokens and no more, each time; the server sent
    # what was due by the instant it noticed (its own clock: a host slow to
    # deliver the close lets a 12th go out, never one not yet due), and
    # nearly always noticed before the 12th was due.
    assert skim["counts"]["tokens_read"] == 10 * len(read), skim["counts"]
    assert all(10 <= sent <= due for sent, due in read), read
    assert sum(sent in (10, 11) for sent, _ in read) >= 0.9 * len(read), read


@pytest.mark.timing
@pytest.mark.parametrize("ignores", [False, True])
def test_reclaim_time_is_when_the_server_counts_the_abort(run: RunWorkload,
                                                          ignores: bool) -> None:
    """Clients read 2 tokens of 40 (50-ms decode steps) and leave; the server
    is scraped every 50 ms. Honoured: each departure is matched with the
    server's abort within one decode step plus one scrape interval, and
    `reclaim_time max < 150ms` passes (30 samples cannot decide a p99). Ignored: no abort ever comes, the
    departures old enough at the run's end count unreclaimed, and it fails."""
    faults = [{"kind": "ignore_disconnect", "start": 0}] if ignores else []
    with recording_sim(proxied=False, ttft_ms=5, itl_ms=50, faults=faults) as rec:
        result, out = run({**spec({"read_tokens": 2}, {}, rate=10, duration=3, max_tokens=40,
                                  slos=["reclaim_time max < 150ms"]),
                           "target": rec.url,
                           "telemetry": {"prometheus": [{"url": rec.url + "/metrics",
                                                         "interval": "50ms"}]}})
        assert rec.sim is not None
        server = list(rec.sim.disconnects)
    summary = (out / "summary.md").read_text()
    assert f"It aborted {result['reclaim']['reclaimed']:,} of them" in summary
    r, left = result["reclaim"], result["counts"]["abandoned"]["read_tokens"]
    print(f"ignores={ignores}: {r}, reclaim_time {result['series'].get('reclaim_time')}")
    assert left >= 28 and len(server) == left
    assert r["abort_counter"] == "vllm:request_success_total" and r["missing"] == []
    assert r["reclaimed"] + r["unreclaimed"] + r["unobserved"] == left
    verdict = result["slos"][0]["verdict"]
    if ignores:
        assert r["reclaimed"] == 0 and r["unreclaimed"] >= left // 2
        # Counted at their age at the last scrape: older than the 1-s grace.
        t = result["series"]["reclaim_time"]["all"]
        assert t["count"] == r["unreclaimed"] and t["p50"] >= 1000
        assert verdict == "fail"
    else:
        assert all(d.ended == d.noticed for d in server)
        assert r["unreclaimed"] == 0 and r["reclaimed"] >= left - 2
        t = result["series"]["reclaim_time"]["all"]
        assert t["count"] == r["reclaimed"]
        # The abort is counted as the server notices (~1 ms); a scrape sees it
        # within one 50-ms interval (and the scrape's own few ms).
        assert t["max"] <= 50 + 50 + 10 and t["mean"] <= 50
        assert verdict == "pass"


def test_reclaim_time_without_an_abort_counter_is_inconclusive(run: RunWorkload) -> None:
    """A server that exports no aborted-request counter: no reclaim_time,
    and the SLO on it says why."""
    with recording_sim(ttft_ms=5, itl_ms=2) as rec:  # the proxy has no /metrics
        result, out = run({**spec({"read_tokens": 2}, {}, rate=20, duration=1, max_tokens=40,
                                  slos=["reclaim_time p99 < 150ms"]), "target": rec.url})
    slo = result["slos"][0]
    assert result["counts"]["abandoned"]["read_tokens"] >= 18
    assert slo["verdict"] == "inconclusive" and "aborted-request counter" in slo["reason"]
    assert result["reclaim"]["reclaimed"] == 0 and result["reclaim"]["abort_counter"] is None
    assert "Not measured: reclaim time: the server exports no aborted-request counter" in \
        (out / "summary.md").read_text()


def test_a_tenant_s_clients_leave_by_its_own_rule(run: RunWorkload) -> None:
    """Two tenants on one scenario: the impatient one's clients (5 ms of
    patience against a 40-ms TTFT) all leave; the other's never do."""
    result, _ = run({"name": "tenants", "duration": 2, "warmup": 0,
                     "simulator": {"ttft_ms": 40, "itl_ms": 1},
                     "scenarios": [{"name": "chat", "kind": "openai-chat", "prompt_tokens": 8,
                                    "max_tokens": 4}],
                     "tenants": [{"name": "rushed", "arrival": {"process": "constant",
                                                                "rate": 10},
                                  "abandon": {"patience": "5ms"}},
                                 {"name": "calm", "arrival": {"process": "constant",
                                                              "rate": 10}}],
                     "slos": ["error_rate < 5%"]})
    left = result["series"]["abandon_time"]
    assert result["counts"]["abandoned"] == {"patience": left["all"]["count"]}
    assert left["tenant:rushed"]["count"] >= 19 and "tenant:calm" not in left
    assert "tenant:rushed" not in result["series"]["latency"]
    assert result["series"]["latency"]["tenant:calm"]["count"] >= 19


@pytest.mark.timing  # the final scrape must follow the cancels' notice: beside four busy
# workers the simulator had noticed 15 of 20 gRPC cancels by then
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_a_kserve_stream_is_left_at_its_rule(run: RunWorkload, transport: str) -> None:
    """Triton's decoupled generate, streamed over gRPC (ModelStreamInfer) or
    HTTP (generate_stream): a client reading 10 tokens of 100 cancels the
    stream there; the simulator notices every one, aborts it, and generates
    no more than a token beyond what was read."""
    scenario = {"name": "llm", "kind": "kserve", "transport": transport, "mode": "generate",
                "model": "loadkit-sim", "prompt_tokens": 8, "max_tokens": 100,
                "abandon": {"read_tokens": 10}}
    result, _ = run({"name": "leave-kserve", "duration": 2, "warmup": 0,
                     "arrival": {"process": "constant", "rate": 10},
                     "simulator": {"ttft_ms": 5, "itl_ms": 4}, "scenarios": [scenario],
                     "slos": ["error_rate < 5%"], "client": {"drain": "2s"}})
    c, r = result["counts"], result["reclaim"]
    left = c["abandoned"]["read_tokens"]
    assert c["completed"] == 0 and c["errors"] == 0 and left >= 19
    assert c["tokens_read"] == 10 * left
    # The probe's request stays (it never leaves): the server saw `left` hang-ups,
    # but for the last, whose cancel may reach it after the last scrape.
    assert left - 1 <= last(result, "loadkit_sim_disconnects_total") <= left
    assert last(result, "loadkit_sim_tokens_after_disconnect_total") == 0
    assert r["zombie_tokens"] <= left and r["abort_counter"] == "vllm:request_success_total"
    assert r["reclaimed"] + r["unobserved"] == left and r["unreclaimed"] == 0


@pytest.mark.timing  # patience kept to 2 ms; each cancel noticed before the last scrape
def test_an_impatient_grpc_client_cancels_before_the_first_token(run: RunWorkload) -> None:
    """20 ms of patience against a 40-ms TTFT over gRPC: every stream is
    cancelled before its first token, and the simulator notices each."""
    scenario = {"name": "llm", "kind": "kserve", "transport": "grpc", "mode": "generate",
                "model": "loadkit-sim", "prompt_tokens": 8, "max_tokens": 20,
                "abandon": {"patience": "20ms"}}
    result, _ = run({"name": "impatient-grpc", "duration": 2, "warmup": 0,
                     "arrival": {"process": "constant", "rate": 10},
                     "simulator": {"ttft_ms": 40, "itl_ms": 2}, "scenarios": [scenario],
                     "slos": ["abandon_rate < 5%"]})
    c = result["counts"]
    left = c["abandoned"]["patience"]
    assert c["completed"] == 0 and c["errors"] == 0 and left >= 19 and c["tokens_read"] == 0
    assert last(result, "loadkit_sim_disconnects_total") == left
    assert result["series"]["abandon_time"]["all"]["p50"] == pytest.approx(20, abs=2)
    assert [s["verdict"] for s in result["slos"]] == ["fail"]
