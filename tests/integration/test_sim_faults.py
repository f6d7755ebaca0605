"""Every simulator fault, observed from outside exactly as configured: rates
within sampling error (loadkit classifies each kind), 429 with Retry-After,
stall lengths and spacing, degradation, version B, replica death, and the
schedule's on/off window.  The schedule arithmetic is also checked on plain
numbers."""

from __future__ import annotations

import asyncio
import math
import statistics

import aiohttp
import pytest

from loadkit.sim import SimConfig
from loadkit.sim.faults import parse_faults
from loadkit.sim.timeline import Timeline
from support.run import RunWorkload
from support.sim import (
    Health,
    Posted,
    Streamed,
    chat,
    gauge,
    live_sim,
    run_async,
    timed_post,
    timed_stream,
)

# -- the schedule, on plain numbers ----------------------------------------------------


def test_schedule_validation_names_the_bad_entry() -> None:
    ok = parse_faults('[{"kind": "stall", "duration": "250ms", "every": "2s", "start": "1m"}]')
    assert (ok[0].duration, ok[0].every, ok[0].start, ok[0].end) == (0.25, 2.0, 60.0, None)
    assert parse_faults([{"kind": "rate_limit", "per_second": 5}])[0].burst == 5.0
    for bad, words in [
        ([{"kind": "eror", "rate": 0.1}], "faults[0].kind"),
        ([{"kind": "error"}], "needs rate"),
        ([{"kind": "error", "rate": 1.5}], "faults[0].rate"),
        ([{"kind": "error", "rate": 0.1, "status": 404}], "5xx"),
        ([{"kind": "error", "rate": 0.1, "every": 3}], "unknown key(s) every"),
        ([{"kind": "stall", "duration": 2, "every": 1}], "shorter than every"),
        ([{"kind": "reset", "rate": 0.1, "start": 5, "end": 2}], "after start"),
        ([{"kind": "degrade", "percent_per_minute": 5, "start": "soon"}], "faults[0].start"),
        ({"kind": "error"}, "a list"),
        ([{"kind": "merge_tokens", "tokens": 0}], "faults[0].tokens must be an integer >= 1"),
    ]:
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")
                           .replace("[", r"\[").replace("]", r"\]")):
            parse_faults(bad)
    with pytest.raises(ValueError, match=r"faults\[0\].replica must be < replicas"):
        SimConfig.from_mapping({"faults": [{"kind": "replica_death", "replica": 1}]})


def test_timeline_arithmetic_on_a_fake_clock() -> None:
    stall = parse_faults([{"kind": "stall", "duration": 0.3, "every": 1.0, "start": 2,
                           "end": 4}])
    tl = Timeline(stall, origin=100.0)  # loop time 100 is t = 0
    assert tl.advance(0, 101.0, 0.5) == 101.5  # before the first freeze
    assert tl.advance(0, 101.9, 0.2) == pytest.approx(102.4)  # 0.1 before, frozen, 0.1 after
    assert tl.advance(0, 102.1, 0.05) == pytest.approx(102.35)  # starts inside a freeze
    assert tl.advance(0, 101.0, 3.0) == pytest.approx(104.6)  # crosses the freezes at 2 and 3
    assert tl.advance(0, 104.0, 0.5) == 104.5  # schedule over
    assert tl.frozen_until(0, 103.1) == pytest.approx(103.3) and tl.frozen_until(0, 103.5) is None
    degrade = Timeline(parse_faults([{"kind": "degrade", "percent_per_minute": 10,
                                      "start": 60, "replica": 1}]), origin=0.0)
    assert degrade.speed_factor(1, 30.0) == 1.0
    assert degrade.speed_factor(1, 180.0) == pytest.approx(1.1 ** 2)  # compounding
    assert degrade.speed_factor(0, 180.0) == 1.0  # another replica


# -- request-level faults, classified by loadkit ------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("fault,stream,kind", [
    ({"kind": "error", "rate": 0.2, "status": 503}, False, "http_5xx"),
    ({"kind": "reset", "rate": 0.25}, True, "reset"),
    ({"kind": "malformed", "rate": 0.2}, True, "protocol"),
])
def test_request_faults_are_classified_by_loadkit(run: RunWorkload, fault: dict, stream: bool,
                                                  kind: str) -> None:
    """200 requests through loadkit's embedded simulator (the workload's
    `simulator:` mapping, passed as flags): the fault's share of them fails,
    as that kind, within four standard deviations."""
    n, rate = 200, fault["rate"]
    result, _ = run({
        "name": "fault", "duration": 2, "warmup": 0, "seed": 5,
        "simulator": {"preset": "fast", "faults": [fault]},
        "arrival": {"process": "constant", "rate": 100},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": stream,
                       "max_tokens": 8, "prompt_tokens": 16}],
    }, probe=False)  # the probe would draw from the same seeded faults
    by_kind = {k: v for k, v in result["errors"]["by_kind"].items() if v}
    failed = by_kind.pop(kind, 0)
    print(f"{fault['kind']}: {failed} of {n} failed as {kind} (expected {n * rate:.0f})")
    assert by_kind == {}, result["errors"]
    assert abs(failed - n * rate) <= 4 * math.sqrt(n * rate * (1 - rate)), failed
    assert result["counts"]["completed"] + failed == n


@pytest.mark.timing
def test_rate_limit_answers_429_with_retry_after() -> None:
    faults = [{"kind": "rate_limit", "tenant": "acme", "per_second": 10, "burst": 5},
              {"kind": "rate_limit", "tenant": "slow", "per_second": 0.5, "burst": 1}]

    async def go() -> tuple[list[Posted], list[Posted], list[Posted], dict[str, float]]:
        async with live_sim(ttft_ms=1, itl_ms=1, output_tokens=2, faults=faults) as live:
            async def one(at: float, tenant: str) -> Posted:
                await live.at(at)
                return await timed_post(live, chat(), headers={"x-tenant": tenant})

            start = live.now() + 0.05
            acme_sent = [asyncio.create_task(one(start + k / 40, "acme")) for k in range(40)]
            other_sent = [asyncio.create_task(one(start + k / 40, "other")) for k in range(40)]
            acme, other = await asyncio.gather(*acme_sent), await asyncio.gather(*other_sent)
            slow = [await one(live.now(), "slow") for _ in range(2)]
            return acme, other, slow, await live.metrics()

    acme, other, slow, m = run_async(go())
    ok = [r for r in acme if r[1] == 200]
    limited = [r for r in acme if r[1] == 429]
    print(f"rate limit: {len(ok)} of 40 let through (expected 5 + 10 x 0.975 = 14.75)")
    # A full bucket of 5, then 10 per second over the 0.975 s the 40 arrivals span.
    assert 13 <= len(ok) <= 16 and len(ok) + len(limited) == 40, len(ok)
    assert all(r[2]["Retry-After"] == "1" for r in limited)  # <= 0.1 s, rounded up
    assert all(r[3]["error"]["code"] == "rate_limit_exceeded" for r in limited)
    assert all(r[1] == 200 for r in other)  # limits are per tenant
    assert [r[1] for r in slow] == [200, 429] and slow[1][2]["Retry-After"] == "2"
    assert m['loadkit_sim_faults_injected_total{kind="rate_limit"}'] == len(limited) + 1


# -- time faults -------------------------------------------------------------------------


@pytest.mark.timing
def test_stall_freezes_every_stream_for_its_duration() -> None:
    """Freezes of 250 ms at t = 0.3 and 1.1 s (every 0.8 s until 1.9 s)."""
    stall = {"kind": "stall", "duration": "250ms", "every": "800ms", "start": 0.3,
             "end": 1.9}

    async def go() -> tuple[Streamed, Streamed]:
        async with live_sim(ttft_ms=5, itl_ms=5, faults=[stall]) as live:
            long = asyncio.create_task(timed_stream(live, chat(max_tokens=300)))
            await live.at(1.2)  # inside the second freeze, which ends at 1.35
            late = await timed_stream(live, chat(max_tokens=2))
            return await long, late

    (_, times), (late_sent, late_times) = run_async(go())
    gaps = [(a, b - a) for a, b in zip(times, times[1:])]
    long_gaps = [(a, g) for a, g in gaps if g > 0.1]
    print("stalls (start s, gap ms):", [(round(a, 4), round(1000 * g, 2)) for a, g in long_gaps],
          f"late TTFT at {late_times[0]:.4f} s")
    assert len(long_gaps) == 2, long_gaps
    for (at, gap), freeze in zip(long_gaps, (0.3, 1.1)):
        assert 0.250 <= gap <= 0.250 + 0.005 + 0.004, gap  # the freeze plus at most a step
        assert freeze - 0.005 - 0.003 <= at <= freeze + 0.003, at
    assert statistics.median(g for _, g in gaps) == pytest.approx(0.005, abs=0.0007)
    assert len(times) == 300
    # A request arriving during a freeze gets its first token after it.
    assert abs(late_times[0] - (1.35 + 0.005)) <= 0.004, (late_sent, late_times[0])


@pytest.mark.timing
def test_degradation_grows_step_times_by_the_configured_rate() -> None:
    """6000%/min compounding: x 61 ** (t / 60) at t seconds."""
    degrade = {"kind": "degrade", "percent_per_minute": 6000}

    async def go() -> list[float]:
        async with live_sim(ttft_ms=0, itl_ms=10, faults=[degrade]) as live:
            return (await timed_stream(live, chat(max_tokens=190)))[1]

    times = run_async(go())
    for lo, hi in ((0.1, 0.5), (1.3, 1.7)):
        inside = [t for t in times if lo <= t < hi]
        # The mean gap: a median would be skewed by the loop's 1-ms timer rounding.
        observed = (inside[-1] - inside[0]) / (len(inside) - 1)
        expected = 0.010 * 61 ** (((lo + hi) / 2) / 60)
        print(f"degrade: step {1000 * observed:.3f} ms at {lo}-{hi} s, expected "
              f"{1000 * expected:.3f} ms")
        assert abs(observed - expected) <= 0.01 * expected, (lo, observed, expected)


@pytest.mark.timing
def test_version_b_is_slower_and_says_the_wrong_thing() -> None:
    version_b = {"kind": "version_b", "fraction": 0.5, "slowdown": 2, "wrong_content": True}

    async def go() -> list[Posted]:
        async with live_sim(ttft_ms=4, itl_ms=2, output_tokens=8, faults=[version_b]) as live:
            out = []
            for _ in range(6):
                out += await asyncio.gather(*(timed_post(live, chat()) for _ in range(10)))
            return out

    answers = run_async(go())
    b = [r for r in answers if r[2]["X-Loadkit-Sim-Version"] == "b"]
    a = [r for r in answers if r[2]["X-Loadkit-Sim-Version"] == "a"]
    median_a = statistics.median(r[0] for r in a)
    median_b = statistics.median(r[0] for r in b)
    print(f"version b: {len(b)} of 60; latency medians a {1000 * median_a:.1f} ms, "
          f"b {1000 * median_b:.1f} ms")
    assert abs(len(b) - 30) <= 4 * math.sqrt(60 * 0.25), len(b)
    lorem = {"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"}
    for r in b:
        assert set(r[3]["choices"][0]["message"]["content"].split()) <= lorem
        assert r[0] >= 0.036, r[0]  # (4 + 7 x 2) ms x 2, never early
    for r in a:
        assert not set(r[3]["choices"][0]["message"]["content"].split()) & lorem
        assert r[0] >= 0.018, r[0]
    # B takes twice A's 18 ms.  Both versions ran mixed in the same batches, so
    # what this machine adds to a request cancels in the difference.
    assert abs((median_b - median_a) - 0.018) <= 0.006, (median_a, median_b)


# -- replicas ---------------------------------------------------------------------------


@pytest.mark.timing
def test_replica_death_cuts_its_requests_and_health_shows_it() -> None:
    death = {"kind": "replica_death", "replica": 1, "start": 0.5, "end": 1.2}

    async def go() -> tuple[list[list[float]], tuple[Health, dict[str, float]], Posted, Health,
                            Health]:
        async with live_sim(replicas=2, ttft_ms=0, itl_ms=10, load_ms=200,
                            faults=[death]) as live:
            await live.at(0.25)  # both replicas have loaded
            streams = [asyncio.create_task(timed_stream(live, chat(max_tokens=150)))
                       for _ in range(6)]  # 1.5 s each, three per replica
            await live.at(0.7)
            during = await live.health(), await live.metrics()
            served = await timed_post(live, chat(max_tokens=3))
            await live.at(1.3)
            reviving = await live.health()
            await live.at(1.45)
            back = await live.health()
            return [t for _, t in await asyncio.gather(*streams)], during, served, reviving, back

    streams, (health, m), served, reviving, back = run_async(go())
    lengths = sorted(len(t) for t in streams)
    print("tokens per stream with a death at 0.5 s:", lengths)
    assert lengths[3:] == [150, 150, 150], lengths  # the other replica's streams finish
    # The dead replica's streams are cut at 0.5 s: one token per 10-ms step
    # from their first (at ~0.25 s, later on a busy host) up to the death.
    cut = [t for t in streams if len(t) < 150]
    assert len(cut) == 3 and all(
        abs(len(t) - (1 + (0.5 - t[0]) / 0.010)) <= 2 for t in cut), [(len(t), t[0]) for t in cut]
    assert health == (200, {"status": "degraded",
                            "replicas": {"ready": 1, "cold": 0, "loading": 0, "dead": 1}})
    assert m['loadkit_sim_replicas{state="dead"}'] == 1
    assert m['loadkit_sim_gpu_power_watts{replica="1"}'] == 0
    assert gauge(m, "vllm:num_requests_running") == 3  # the survivor's streams
    assert served[1] == 200  # the survivor takes new requests
    assert reviving[1]["replicas"]["loading"] == 1  # comes back cold, loading 200 ms
    assert back == (200, {"status": "ok"})


def test_all_replicas_dead_answers_503() -> None:
    async def go() -> tuple[Health, Posted]:
        async with live_sim(faults=[{"kind": "replica_death", "replica": 0}]) as live:
            await asyncio.sleep(0.01)
            return await live.health(), await timed_post(live, chat())

    health, (_, status, _, doc) = run_async(go())
    assert health == (503, {"status": "dead",
                            "replicas": {"ready": 0, "cold": 0, "loading": 0, "dead": 1}})
    assert status == 503 and doc["error"]["type"] == "server_error"


@pytest.mark.timing
def test_a_fault_is_on_only_inside_its_window() -> None:
    """Every request fails from t = 0.3 to 0.6 s, and none outside."""
    async def go() -> list[tuple[float, int]]:
        async with live_sim(ttft_ms=1, itl_ms=1, output_tokens=2,
                            faults=[{"kind": "error", "rate": 1.0, "start": 0.3,
                                     "end": 0.6}]) as live:
            async def one(at: float) -> tuple[float, int]:
                await live.at(at)
                return at, (await timed_post(live, chat()))[1]
            return await asyncio.gather(*(one(0.05 + k * 0.05) for k in range(18)))

    for at, status in run_async(go()):
        if abs(at - 0.3) > 0.003 and abs(at - 0.6) > 0.003:
            assert status == (500 if 0.3 <= at < 0.6 else 200), (at, status)


def test_fault_draws_repeat_with_the_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        async with live_sim(seed=seed, ttft_ms=0, itl_ms=0,
                            faults=[{"kind": "error", "rate": 0.5}]) as live:
            return [(await timed_post(live, chat()))[1] for _ in range(24)]

    first, again, other = (run_async(statuses(s)) for s in (1, 1, 2))
    assert first == again and first != other
    assert set(first) == {200, 500}


def test_stream_cut_is_a_payload_error_for_aiohttp_clients() -> None:
    """What loadkit's engine classifies as `reset`: the answer stops mid-body."""
    async def go() -> None:
        async with live_sim(ttft_ms=0, itl_ms=1, faults=[{"kind": "reset", "rate": 1.0,
                                                          "after_tokens": 3}]) as live:
            async with live.session.post(live.url + "/v1/chat/completions",
                                         json=chat(max_tokens=10, stream=True)) as r:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await r.read()
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await timed_post(live, chat(max_tokens=10))

    run_async(go())
