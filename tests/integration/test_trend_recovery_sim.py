"""Trend and recovery-time SLOs against the embedded simulator on loopback.

The truth comes from the simulator's own settings: a `ramp` fault adds
5 ms to the time to first token for every second since it started, and a
replica death with a restart reloads the model for `load_ms` before it
serves again. The 20 seeded flat runs are in tests/unit/test_trend_recovery.py
(the estimator on synthetic noise with this run's sample sizes); here one
real flat run checks that loopback noise shows no trend.
"""

from __future__ import annotations

import pytest

from support.run import RunWorkload

# Timings and the generator's trust are asserted: run alone, not under xdist.
pytestmark = pytest.mark.timing

# As in test_slo_live.py: the collector settled before the run's zero.
TIMED = {"quiet_gc": True}
RAMP_MS_PER_S = 5.0
RUN_S = 12  # measured seconds of each trend run: 12 one-second points


def chat_workload(simulator: dict, slos: list, duration: float, rate: float,
                  stream: bool = True) -> dict:
    return {"name": "trend", "seed": 3, "warmup": "2s", "duration": f"{duration}s",
            "interval": "1s", "simulator": simulator,
            "arrival": {"process": "constant", "rate": rate},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": stream,
                           "prompt_tokens": 8, "max_tokens": 4}],
            "slos": slos}


def by_text(result: dict) -> dict:
    return {s["text"]: s for s in result["slos"]}


@pytest.mark.slow  # two 14-s runs
def test_a_linear_slowdown_is_measured_and_fails_and_a_flat_run_passes(run: RunWorkload) -> None:
    slos = ["ttft p50 trend < 1 ms/s", "latency p50 trend < 1 ms/s", "ttft p50 trend < 10%/h",
            "ttft p50 trend < 10 ms/s", "gpu.mem_used trend < 200MB/h in 1s windows"]
    ramp = {"ttft_ms": 20, "itl_ms": 2,
            "faults": [{"kind": "ramp", "ms_per_s": RAMP_MS_PER_S}]}
    result, _ = run(chat_workload(ramp, slos, RUN_S, 50), **TIMED)
    s = by_text(result)
    ttft, latency, relative, loose = (s[t] for t in slos[:4])
    print(f"ramp of {RAMP_MS_PER_S} ms/s: ttft p50 trend {ttft['observed']:.3f} ms/s "
          f"[{ttft['ci_low']:.3f}, {ttft['ci_high']:.3f}], latency p50 trend "
          f"{latency['observed']:.3f} ms/s [{latency['ci_low']:.3f}, {latency['ci_high']:.3f}]"
          f", relative {relative['observed']:.0f} %/h")
    for slo in (ttft, latency):
        assert slo["verdict"] == "fail", slo
        assert slo["observed"] == pytest.approx(RAMP_MS_PER_S, rel=0.2), slo
        assert slo["ci_low"] > 1.0, slo
        assert len(slo["trend"]["points"]) >= RUN_S - 2 and slo["trend"]["window_s"] == 1.0
    # Relative to the fitted start: the same slope over the fitted value at 2 s.
    assert relative["verdict"] == "fail"
    assert relative["observed"] == pytest.approx(
        ttft["trend"]["slope_per_s"] * 3600 * 100 / relative["trend"]["intercept"], rel=1e-6)
    assert loose["verdict"] == "pass", loose  # the whole interval is below 10 ms/s

    flat = {"ttft_ms": 20, "itl_ms": 2}
    result, _ = run(chat_workload(flat, slos, RUN_S, 50), **TIMED)
    s = by_text(result)
    print(f"flat: ttft p50 trend {s[slos[0]]['observed']:.3f} ms/s "
          f"[{s[slos[0]]['ci_low']:.3f}, {s[slos[0]]['ci_high']:.3f}], latency p50 trend "
          f"{s[slos[1]]['observed']:.3f} ms/s; gpu.mem_used {s[slos[4]]['observed']} MB/h "
          f"({s[slos[4]]['verdict']})")
    for text in slos[:2]:
        assert s[text]["verdict"] == "pass", s[text]
        assert abs(s[text]["observed"]) < 0.5, s[text]
    # The simulator's memory gauge is flat while its replica is loaded.
    assert s[slos[4]]["verdict"] == "pass", s[slos[4]]


@pytest.mark.slow  # a 28-s run
def test_recovery_after_a_replica_restart_is_within_two_intervals_of_the_load_time(
        run: RunWorkload) -> None:
    """The only replica dies for 4 s (every request fails, 503), then comes back
    cold: it loads the model for 3 s while requests queue, then serves at its
    usual latency. Recovery, timed from the last failing interval, is the
    load time, to the interval."""
    load_s, dead_s = 3.0, 4.0
    # Simulator time starts before the run's zero (start-up, its first load,
    # the probe): about 4 s here, so the death lands ~10 s into the run.
    sim = {"ttft_ms": 100, "itl_ms": 10, "load_ms": load_s * 1000,
           "faults": [{"kind": "replica_death", "replica": 0, "start": 14,
                       "end": 14 + dead_s}]}
    result, _ = run(chat_workload(sim, ["recovery_time < 30s", "recovery_time < 1s"], 26, 40,
                                  stream=False), **TIMED)
    s = by_text(result)
    within, tight = s["recovery_time < 30s"], s["recovery_time < 1s"]
    (d,) = within["recovery"]["disturbances"]
    print(f"outage {d['start_s']:.1f}-{d['end_s']:.1f} s (dead {dead_s} s), baseline p99 "
          f"{d['baseline_ms']} ms over {d['baseline_intervals']} intervals, back at "
          f"{d['recovered_at_s']} s: recovery {d['recovery_s']} s (load {load_s} s)")
    assert d["kind"] == "outage"
    assert d["end_s"] - d["start_s"] == pytest.approx(dead_s, abs=2.0)
    assert d["recovery_s"] == pytest.approx(load_s, abs=2.0), d
    assert within["verdict"] == "pass" and within["observed"] == d["recovery_s"] * 1000
    assert tight["verdict"] == "fail"
