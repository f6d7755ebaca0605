"""Why the tail (loadkit.slo.why) on runs whose server timers and gauges are
given: the split adds up, and each rule names its cause with its evidence,
first where it explains the most, and nothing in a passing run."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from loadkit.outputs.why import split_line
from loadkit.result.model import (
    Health,
    Interval,
    PhaseInfo,
    Scope,
    SLOResult,
    Telemetry,
    TelemetrySeries,
    Verdict,
)
from loadkit.slo.why import explain

PHASES = [PhaseInfo(name="warmup", start_s=0, duration_s=2, warmup=True),
          PhaseInfo(name="measure", start_s=2, duration_s=10, warmup=False)]
OK = Health(cpu_percent=20, steal_percent=0, lateness_p99_ms=0.5, lateness_bound_ms=10,
            saturated=False)


def slo(verdict: Verdict = Verdict.FAIL, marginal: bool = False,
        metric: str = "ttft") -> SLOResult:
    return SLOResult(name="x [all]", text="x", metric=metric, scope=Scope("all"), op="<",
                     threshold=100, unit="ms", observed=150, samples=1000, verdict=verdict,
                     marginal=marginal)


def series(metric: str, values: Sequence[float], kind: str = "gauge") -> TelemetrySeries:
    """One point per second from 1 s (the scrape at t counts what ended before)."""
    return TelemetrySeries(unit="", kind=kind, metric=metric,
                           points=[(float(t + 1), v) for t, v in enumerate(values)])


def timers(queue: float, prefill: float, decode: float, n: int = 20,
           seconds: int = 12) -> dict[str, TelemetrySeries]:
    """The server's per-scrape means (s) and counts, constant over the run."""
    out = {}
    for name, mean in (("queue_time", queue), ("prefill_time", prefill),
                       ("decode_time", decode), ("e2e", queue + prefill + decode)):
        fam = f"vllm:request_{name}_seconds" if name != "e2e" \
            else "vllm:e2e_request_latency_seconds"
        out[f"{fam}.mean"] = series(f"{fam}.mean", [mean] * seconds, "quantile")
        out[f"{fam}.count"] = series(f"{fam}.count", [float(n)] * seconds, "count")
        out[f"{fam}.sum"] = series(f"{fam}.sum", [mean * n] * seconds, "count")
        out[f"{fam}.p99"] = series(f"{fam}.p99", [mean * 2] * seconds, "quantile")
    return out


def telemetry(extra: dict[str, TelemetrySeries]) -> Telemetry:
    return Telemetry(available=False, interval_s=1.0, series=extra)


def intervals(client_ms: float, seconds: int = 12) -> list[Interval]:
    return [Interval(start_s=t, end_s=t + 1, completed=20, service_mean_ms=client_ms)
            for t in range(seconds)]


def test_the_split_adds_up_and_the_remainder_is_outside_the_server() -> None:
    why = explain(intervals(161.0), PHASES, telemetry(timers(0.010, 0.040, 0.100)),
                  [slo(Verdict.PASS)], OK)
    d = why.decomposition
    assert d is not None and d.requests == 200  # the measured phase's
    assert (d.queue_ms, d.prefill_ms, d.decode_ms, d.server_ms) == pytest.approx(
        (10.0, 40.0, 100.0, 150.0))
    assert d.remainder_ms == pytest.approx(11.0)
    assert d.tail_ms["queue"] == pytest.approx(20.0)
    assert why.causes == [] and why.missing == ["its waiting requests (vllm:num_requests_waiting "
                                                "or the like)", "its KV-cache usage "
                                                "(vllm:gpu_cache_usage_perc or the like)"]
    assert [p.remainder_ms for p in why.over_time[2:]] == pytest.approx([11.0] * 10)
    assert split_line(d) == ("mean request 161.0 ms = queue 10.0 + prefill 40.0 + decode 100.0"
                             " + outside the server 11.0 ms (200 requests timed by loadkit, "
                             "split by the server's own timers)")
    # Below zero only where the two sides' requests differ: said so, not hidden.
    under = split_line(explain(intervals(148.0), PHASES, telemetry(timers(0.010, 0.040, 0.100)),
                               [slo(Verdict.PASS)], OK).decomposition)
    assert under is not None and "outside the server -2.0 ms (below zero: the server's " \
        "scrapes and loadkit's intervals cover slightly different requests)" in under


def test_intervals_a_little_off_their_nominal_time_all_count() -> None:
    """Rotations land a millisecond or so off their nominal time: a window
    keeps each interval inside it to 5% of an interval, and the server's
    scrapes over the span those cover. By exact ends an interval 0.5 ms late
    fell out (in a capacity search's 2-s probes, half the requests: the
    server's 470 against the client's 235, and a remainder of -130 ms)."""
    off = [0.0, 0.0004, 0.0003, 0.0008, -0.0002, 0.0001, 0.0006, -0.0005, 0.0003, 0.0002,
           -0.0004, 0.0007, 0.0005]
    late = [Interval(start_s=t + off[t], end_s=t + 1 + off[t + 1], completed=20,
                     service_mean_ms=161.0) for t in range(12)]
    why = explain(late, PHASES, telemetry(timers(0.010, 0.040, 0.100)), [slo(Verdict.PASS)], OK)
    d = why.decomposition
    assert d is not None and d.requests == 200 and d.server_ms == pytest.approx(150.0)
    assert d.remainder_ms == pytest.approx(11.0)
    # A warm-up that ends off the grid (a capacity probe's 20%): the interval
    # across its end, half warm-up, stays out.
    off_grid = [PhaseInfo(name="warmup", start_s=0, duration_s=1.5, warmup=True),
                PhaseInfo(name="measure", start_s=1.5, duration_s=10.5, warmup=False)]
    d = explain(late, off_grid, telemetry(timers(0.010, 0.040, 0.100)), [slo(Verdict.PASS)],
                OK).decomposition
    assert d is not None and d.requests == 200


def test_queueing_is_named_with_its_evidence() -> None:
    tel = timers(0.300, 0.040, 0.100) | {
        "w": series("vllm:num_requests_waiting", [0, 4, 9, 14, 12, 10, 9, 8, 8, 9, 10, 11])}
    why = explain(intervals(441.0), PHASES, telemetry(tel), [slo()], OK)
    assert [c.name for c in why.causes] == ["queueing"]
    cause = why.causes[0]
    assert cause.share == pytest.approx(300 / 441)
    assert cause.evidence[0].startswith("queue wait 300.0 ms of the mean request's 441.0 ms")
    assert "waiting requests peaked at 14" in cause.evidence[1]


def test_kv_pressure_and_cold_starts_are_named_before_the_queue_they_cause() -> None:
    kv = timers(0.300, 0.040, 0.100) | {
        "kv": series("vllm:gpu_cache_usage_perc", [0.5] + [0.97] * 11),
        "w": series("vllm:num_requests_waiting", [0] + [6] * 11)}
    why = explain(intervals(441.0), PHASES, telemetry(kv), [slo()], OK)
    assert [c.name for c in why.causes] == ["kv_cache", "queueing"]
    assert why.causes[0].evidence[:2] == ["KV-cache 97% used at peak",
                                          "6 requests waiting at peak"]
    cold = timers(0.300, 0.040, 0.100) | {
        "loads": series("loadkit_sim_model_loads_total", [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3, 3],
                        "counter")}
    why = explain(intervals(441.0), PHASES, telemetry(cold), [slo()], OK)
    assert [c.name for c in why.causes] == ["cold_start", "queueing"]
    assert why.causes[0].evidence[0] == "2 model loads during the measured phases"


def test_overhead_batching_gpu_limits_and_the_generator() -> None:
    over = explain(intervals(200.0), PHASES, telemetry(timers(0.001, 0.020, 0.079)),
                   [slo()], OK)
    assert [c.name for c in over.causes] == ["overhead"]
    assert over.causes[0].share == pytest.approx(0.5)
    decode = [0.05 + 0.01 * b for b in range(12)]
    tel = timers(0.001, 0.010, 0.1) | {
        "vllm:request_decode_time_seconds.mean": series(
            "vllm:request_decode_time_seconds.mean", decode, "quantile"),
        "vllm:request_decode_time_seconds.sum": series(
            "vllm:request_decode_time_seconds.sum", [d * 20 for d in decode], "count"),
        "vllm:e2e_request_latency_seconds.sum": series(
            "vllm:e2e_request_latency_seconds.sum", [(d + 0.011) * 20 for d in decode], "count"),
        "r": series("vllm:num_requests_running", [float(b) for b in range(12)]),
        "g": series("gpu.clock_reasons", [0.0, 4.0, 4.0] * 4)}
    mean_decode = sum(decode[2:]) / 10
    why = explain(intervals(1000 * (mean_decode + 0.011) + 1), PHASES, telemetry(tel),
                  [slo()], Health(cpu_percent=100, steal_percent=0, lateness_p99_ms=40,
                                  lateness_bound_ms=10, saturated=True))
    assert [c.name for c in why.causes] == ["generator", "batching", "gpu_limits"]
    assert "r = 1.00" in why.causes[1].evidence[1]
    assert why.causes[2].evidence == ["clocks held back by a power cap or heat in 7 of 10 "
                                      "NVML samples"]


def test_a_passing_run_names_no_cause_and_a_silent_server_says_what_is_missing() -> None:
    tel = timers(0.300, 0.040, 0.100)
    assert explain(intervals(441.0), PHASES, telemetry(tel), [slo(Verdict.PASS)], OK).causes == []
    marginal_errors = slo(Verdict.PASS, marginal=True, metric="error_rate")
    assert explain(intervals(441.0), PHASES, telemetry(tel), [marginal_errors], OK).causes == []
    marginal_ttft = slo(Verdict.PASS, marginal=True)
    assert explain(intervals(441.0), PHASES, telemetry(tel), [marginal_ttft], OK).causes
    silent = explain(intervals(441.0), PHASES, None, [slo()], OK)
    assert silent.decomposition is not None and silent.decomposition.server_ms is None
    assert silent.causes == [] and silent.missing[0].startswith("the server's request timers")
