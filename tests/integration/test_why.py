"""Why the tail, against the simulator breaching an SLO for a known reason:
overload (queueing), a small KV-cache, scale-to-zero between requests (cold
starts), a fixed delay in front of the server (overhead). Each run names its
cause first, with its evidence; the server's parts add up to its end to end;
the remainder outside the server is the injected delay."""

from __future__ import annotations

import pytest

from support.run import RunWorkload

pytestmark = [pytest.mark.slow]  # judged by the server's own timers, but for the overhead


def why_run(run: RunWorkload, simulator: dict, slos: list[str], rate: float = 20,
            duration: float = 4, **scenario: object) -> dict:
    result, _ = run({"name": "why", "duration": duration, "warmup": 1, "interval": 1,
                     "arrival": {"process": "constant", "rate": rate},
                     "simulator": simulator,
                     "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 20,
                                    "prompt_tokens": 20, **scenario}],
                     "slos": slos}, probe=False, allow_saturated=True)
    return result


def server_causes(result: dict) -> list[dict]:
    """The causes named, but `generator`: a client slowed by a busy neighbour
    (four test workers on two cores) is this machine's truth, not the server's
    (tests/unit/test_why_rules.py tests that rule)."""
    return [c for c in result["why"]["causes"] if c["name"] != "generator"]


def causes(result: dict) -> list[str]:
    return [c["name"] for c in server_causes(result)]


def test_overload_is_queueing_and_the_server_s_parts_add_up(run: RunWorkload) -> None:
    """Two seats, 100 ms a request: 20 req/s is twice the capacity."""
    result = why_run(run, {"ttft_ms": 10, "itl_ms": 5, "max_num_seqs": 2}, ["ttft p90 < 50ms"])
    assert [s["verdict"] for s in result["slos"]] == ["fail"]
    assert causes(result)[0] == "queueing", result["why"]
    d = result["why"]["decomposition"]
    parts = d["queue_ms"] + d["prefill_ms"] + d["decode_ms"]
    assert parts == pytest.approx(d["server_ms"], rel=0.02)
    assert d["queue_ms"] > d["prefill_ms"] + d["decode_ms"]
    assert d["decode_ms"] == pytest.approx(19 * 5, rel=0.05)  # 19 steps after the first token
    evidence = server_causes(result)[0]["evidence"]
    assert evidence[0].startswith("queue wait") and "waiting requests peaked" in evidence[1]


def test_a_full_kv_cache_is_named_before_the_queue_it_makes(run: RunWorkload) -> None:
    """A cache of 80 tokens holds two requests of 20 + 20 tokens (the prompt's
    20 words, its number one of them), and is full."""
    result = why_run(run, {"ttft_ms": 10, "itl_ms": 5, "kv_cache_tokens": 80},
                     ["ttft p90 < 50ms"])
    assert causes(result)[:2] == ["kv_cache", "queueing"], result["why"]
    evidence = server_causes(result)[0]["evidence"]
    assert evidence[0] == "KV-cache 100% used at peak" and "waiting at peak" in evidence[1]


def test_requests_after_idle_gaps_are_cold_starts(run: RunWorkload) -> None:
    """Scale to zero after 0.3 s idle, a 300 ms load: at 2 req/s every request
    wakes the model."""
    result = why_run(run, {"ttft_ms": 10, "itl_ms": 2, "scale_to_zero_s": 0.3,
                           "load_ms": 300}, ["ttft p90 < 100ms"], rate=2, duration=5)
    assert [s["verdict"] for s in result["slos"]] == ["fail"]
    assert causes(result)[0] == "cold_start", result["why"]
    assert "model loads during the measured phases" in server_causes(result)[0]["evidence"][0]


@pytest.mark.timing  # what this machine adds must cancel between the two runs
def test_a_delay_in_front_of_the_server_is_overhead_of_its_size(run: RunWorkload) -> None:
    """The same run without and with 50 ms added before the server's timers
    start: the remainder outside the server grows by the 50 ms (what this
    machine adds is in both and cancels), and only the second names a cause."""
    sim = {"ttft_ms": 10, "itl_ms": 1}
    slos = ["latency p50 < 45ms"]
    # The base before and after, averaged, at 80 requests a run: the remainder
    # is a mean, and one stall outside the server's timers in a single short
    # base run moves it as much as the bound (a busy CI host).
    before = why_run(run, sim, slos)
    slow = why_run(run, {**sim, "faults": [{"kind": "overhead", "start": 0, "ms": 50}]}, slos)
    after = why_run(run, sim, slos)
    for base in (before, after):
        assert causes(base) == [] and [s["verdict"] for s in base["slos"]] == ["pass"]
    assert causes(slow)[0] == "overhead", slow["why"]
    remainders = [r["why"]["decomposition"]["remainder_ms"] for r in (before, slow, after)]
    grown = remainders[1] - (remainders[0] + remainders[2]) / 2
    print(f"remainder grew by {grown:.2f} ms (remainders {remainders} ms)")
    # +-1 ms: the simulator's stamps and timers count whole milliseconds of a
    # loop clock cached at each iteration's start (50.3-50.8 ms seen).
    assert grown == pytest.approx(50, abs=1.0)
