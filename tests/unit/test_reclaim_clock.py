"""The reclaim clock: departures matched, oldest first, with the steps of
the server's abort counter, scrape by scrape; and the zombie tokens from
the server's count of generated tokens."""

from __future__ import annotations

from loadkit.record.reclaim_clock import ReclaimClock
from loadkit.result.telemetry import Telemetry, TelemetrySeries
from loadkit.slo.reclaim import reclaim

MS = 1_000_000
A, B = ("measure", "chat", "t1"), ("measure", "chat", "t2")


def clock(horizon_ms: int = 60_000) -> tuple[ReclaimClock, list]:
    samples: list = []
    c = ReclaimClock(lambda scope, ns: samples.append((scope, ns // MS)), horizon_ms * MS)
    c.counter = "vllm:request_success_total"
    return c, samples


def test_each_abort_step_reclaims_the_oldest_departure_before_the_scrape() -> None:
    c, samples = clock()
    c.counted("s", 0, 7.0)  # the baseline: aborts before the run are not ours
    c.left(10 * MS, A)
    c.left(20 * MS, B)
    c.left(95 * MS, A)
    c.counted("s", 50 * MS, 8.0)  # one abort: the oldest departure
    c.counted("s", 100 * MS, 10.0)  # two more: the next two, both before 100 ms
    assert samples == [(A, 40), (B, 80), (A, 5)]
    assert (c.reclaimed, c.unreclaimed, c.waiting) == (3, 0, type(c.waiting)())


def test_an_abort_never_matches_a_departure_after_its_scrape() -> None:
    c, samples = clock()
    c.counted("s", 0, 0.0)
    c.left(60 * MS, A)
    c.counted("s", 50 * MS, 1.0)  # another client's abort, before ours
    c.counted("s", 100 * MS, 1.0)
    assert samples == [] and len(c.waiting) == 1


def test_a_counter_reset_restarts_from_zero() -> None:
    c, samples = clock()
    c.counted("s", 0, 5.0)
    c.left(10 * MS, A)
    c.counted("s", 30 * MS, 1.0)  # restarted: 1 abort since
    assert samples == [(A, 20)]


def test_departures_never_aborted_count_at_the_horizon_then_at_the_end() -> None:
    c, samples = clock(horizon_ms=1000)
    c.counted("s", 0, 0.0)
    c.left(0, A)
    c.left(500 * MS, B)
    c.left(1900 * MS, A)
    c.counted("s", 1200 * MS, 0.0)  # the first is a zombie: 1 s, the horizon
    assert samples == [(A, 1000)] and c.unreclaimed == 1
    c.end(grace_ns=300 * MS)  # at 1.2 s: B is 700 ms old, the last not yet left
    assert samples == [(A, 1000), (B, 700)]
    assert (c.unreclaimed, c.unobserved) == (2, 1)


def test_until_an_abort_counter_is_scraped_only_the_horizon_is_kept() -> None:
    samples: list = []
    c = ReclaimClock(lambda scope, ns: samples.append(ns), horizon_ns=1000 * MS)
    for t in range(0, 5000, 100):
        c.left(t * MS, A)
    assert len(c.waiting) == 10 and "no aborted-request counter" in c.unmeasured
    c.counter = "sglang:num_aborted_requests_total"  # found late: the kept ones count
    c.counted("s", 5000 * MS, 0.0)
    c.counted("s", 5100 * MS, 1.0)
    # The oldest kept is matched; the next, 1 s old by now, reaches the horizon.
    assert samples == [1100 * MS, 1000 * MS] and len(c.waiting) == 8


def series(metric: str, points: list[tuple[float, float]], kind: str) -> TelemetrySeries:
    return TelemetrySeries(unit="", kind=kind, metric=metric, points=points)


def test_zombie_tokens_from_a_counter_or_a_histogram_s_sums() -> None:
    """vLLM's counter behind a host prefix (last scrape - first), TGI's
    per-scrape histogram sums (added up), and a server with neither."""
    vllm = Telemetry(available=False, series={"a": series(
        "127.0.0.1:8000.vllm:generation_tokens_total", [(0, 100), (1, 400), (2, 700)],
        "counter")})
    tgi = Telemetry(available=False, series={"b": series(
        "prom.tgi_request_generated_tokens.sum", [(1, 250), (2, 350)], "count")})
    got = {name: reclaim(t, received=500, abandoned=10)
           for name, t in (("vllm", vllm), ("tgi", tgi), ("none", Telemetry(available=False)))}
    assert got["vllm"] is not None and got["tgi"] is not None and got["none"] is not None
    assert (got["vllm"].generated, got["vllm"].zombie_tokens, got["vllm"].per_abandoned) == \
        (600, 100, 10.0)
    assert (got["tgi"].counter, got["tgi"].generated, got["tgi"].zombie_tokens) == \
        ("tgi_request_generated_tokens.sum", 600, 100)
    assert got["none"].zombie_tokens is None and "generated-token" in got["none"].missing[0]
    assert all("reclaim time: not measured" in r.missing[-1] for r in got.values() if r)
    assert reclaim(vllm, received=500, abandoned=0) is None  # nobody left
