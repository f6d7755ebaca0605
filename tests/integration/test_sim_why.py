"""What the simulator exports for a "why is the tail where it is" analysis,
observed over loopback HTTP: each request's queue, prefill and decode times
(vLLM's histograms) adding up to its end-to-end time, the serial schedule of
one batch seat, time spent in front of the server (an ``overhead`` fault)
that the client sees and the server's histograms do not, model loads, and
the prefix cache resets of vLLM and SGLang."""

from __future__ import annotations

import asyncio
import math
import statistics
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadkit.sim import SimConfig
from loadkit.sim.faults import parse_faults
from support.sim import (
    CHAT,
    COMPLETIONS,
    Live,
    chat,
    live_sim,
    prompt_ids,
    run_async,
    timed_post,
    timed_stream,
)

# Phase times are asserted to the millisecond: not beside other tests under xdist.
pytestmark = pytest.mark.timing

MODEL = {"model_name": "loadkit-sim"}
PHASES = ("queue", "prefill", "decode", "inference")
HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "e2e": "vllm:e2e_request_latency_seconds",
    **{p: f"vllm:request_{p}_time_seconds" for p in PHASES},
}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(live: Live) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client: (name, labels) -> value."""
    async with live.session.get(live.url + "/metrics") as r:
        assert r.status == 200
        text = await r.text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m: Samples, name: str, **labels: str) -> float:
    return m[(name, frozenset(labels.items()))]


def hist(before: Samples, after: Samples, key: str) -> tuple[float, float]:
    """(count, sum) of a histogram's change between two scrapes."""
    count, total = (HISTOGRAMS[key] + part for part in ("_count", "_sum"))
    return (value(after, count, **MODEL) - value(before, count, **MODEL),
            value(after, total, **MODEL) - value(before, total, **MODEL))


def assert_phases_add_up(before: Samples, after: Samples, answered: int) -> dict[str, float]:
    """Counts equal, sums consistent; returns each histogram's sum of the change."""
    deltas = {k: hist(before, after, k) for k in HISTOGRAMS if k != "ttft"}
    assert {k: c for k, (c, _) in deltas.items()} == dict.fromkeys(deltas, answered), deltas
    sums = {k: s for k, (_, s) in deltas.items()}
    parts = sums["queue"] + sums["prefill"] + sums["decode"]
    assert math.isclose(parts, sums["e2e"], rel_tol=1e-6), sums
    assert math.isclose(sums["prefill"] + sums["decode"], sums["inference"], rel_tol=1e-6), sums
    # Means from the deltas, as a client computes them: the same identity.
    means = {k: s / answered for k, s in sums.items()}
    assert math.isclose(means["queue"] + means["prefill"] + means["decode"], means["e2e"],
                        rel_tol=1e-9, abs_tol=1e-12), means
    for key in deltas:  # cumulative buckets, +Inf == count
        name = HISTOGRAMS[key]
        buckets = sorted(((float(dict(lab)["le"]), v) for (n, lab), v in after.items()
                          if n == name + "_bucket"))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == math.inf
        assert counts[-1] == value(after, name + "_count", **MODEL)
    return sums


# -- the phases add up -----------------------------------------------------------------

ANTHROPIC = {"anthropic-version": "2023-06-01"}


def _requests() -> list[tuple[str, dict[str, Any], dict[str, str]]]:
    out: list[tuple[str, dict[str, Any], dict[str, str]]] = []
    for stream in (False, True):
        out += [
            (CHAT, chat("why so slow", max_tokens=5, stream=stream), {}),
            (COMPLETIONS, prompt_ids(12, max_tokens=5, stream=stream), {}),
            ("/v1/responses", {"model": "m", "input": "why so slow", "max_output_tokens": 5,
                               "stream": stream}, {}),
            ("/v1/messages", {"model": "m", "max_tokens": 5, "stream": stream,
                              "messages": [{"role": "user", "content": "why so slow"}]},
             ANTHROPIC),
        ]
    return out


def test_queue_prefill_and_decode_add_up_to_e2e_in_every_dialect() -> None:
    """Streamed and plain answers of the four dialects, and embeddings, with a
    queue (two seats for ten requests): every histogram counts each answered
    request once, and queue + prefill + decode == e2e, prefill + decode ==
    inference, in sums and in means."""
    async def post(live: Live, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        async with live.session.post(live.url + path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            await r.read()

    async def go() -> tuple[Samples, Samples]:
        async with live_sim(ttft_ms=8, prefill_ms_per_token=0.05, itl_ms=3, max_num_seqs=2,
                            embedding_ms=4) as live:
            before = await scrape(live)
            calls = [post(live, p, b, h) for p, b, h in _requests()]
            calls += [post(live, "/v1/embeddings", {"input": "why"}, {}) for _ in range(2)]
            await asyncio.gather(*calls)
            return before, await scrape(live)

    before, after = run_async(go())
    sums = assert_phases_add_up(before, after, answered=10)
    # Ten at once on two seats: the queue is most of the end-to-end time.
    assert sums["queue"] > sums["prefill"] and sums["decode"] > 0, sums
    ttft_count, ttft_sum = hist(before, after, "ttft")
    assert ttft_count == 8  # the generated answers; embeddings have no first token
    assert ttft_sum < sums["queue"] + sums["prefill"], (ttft_sum, sums)
    assert value(after, "vllm:request_success_total", finished_reason="length", **MODEL) == 10


def test_one_seat_queues_requests_on_the_serial_schedule() -> None:
    """max_num_seqs 1: five streams sent together are served one after the
    other, each 30 ms of prefill (20 + 0.5 x 20 prompt tokens) and 4 x 5 ms of
    decode, so the i-th waits i x 50 ms: 500 ms of queue in all, less how much
    later than the first each arrived (a millisecond or two each)."""
    k, service = 5, 0.050

    async def go() -> tuple[Samples, Samples, list[float]]:
        async with live_sim(ttft_ms=20, prefill_ms_per_token=0.5, itl_ms=5,
                            max_num_seqs=1) as live:
            body = prompt_ids(20, max_tokens=5)
            # Open k keep-alive connections first, so the measured round is
            # sent at once rather than behind TCP connects.
            await asyncio.gather(*(timed_post(live, body, COMPLETIONS) for _ in range(k)))
            before = await scrape(live)
            got = await asyncio.gather(*(timed_stream(live, body, COMPLETIONS)
                                         for _ in range(k)))
            sent = [s for s, _ in got]
            return before, await scrape(live), sent

    before, after, sent = run_async(go())
    sums = assert_phases_add_up(before, after, answered=k)
    spread = sum(s - min(sent) for s in sent)
    predicted = service * k * (k - 1) / 2
    print(f"queue {sums['queue'] * 1000:.2f} ms, serial schedule {predicted * 1000:.0f} ms "
          f"(send spread {spread * 1000:.2f} ms)")
    assert predicted - k * 0.003 <= sums["queue"] <= predicted + 1e-6, sums
    # On the model's clock: prefill = ttft_ms + 0.5 ms x 20 tokens, decode 4 x itl_ms.
    assert sums["prefill"] == pytest.approx(k * 0.030, abs=1e-6), sums
    assert sums["decode"] == pytest.approx(k * 0.020, abs=1e-6), sums
    # The first token counts at its deadline, streamed as plain: TTFT = queue + prefill.
    ttft_count, ttft_sum = hist(before, after, "ttft")
    assert ttft_count == k
    assert ttft_sum == pytest.approx(sums["queue"] + sums["prefill"], rel=1e-6)


# -- time in front of the server -------------------------------------------------------


def test_overhead_is_seen_by_the_client_not_by_the_server() -> None:
    """An `overhead` of 50 ms from 0.4 s: requests after it take 50 ms more for
    the client, while the server's end-to-end histogram is as before."""
    n, service = 5, 0.014  # ttft 10 ms + 2 x 2 ms

    async def go() -> tuple[list[Samples], list[list[float]]]:
        async with live_sim(ttft_ms=10, itl_ms=2, output_tokens=3, faults=[
                {"kind": "overhead", "ms": 50, "start": 0.4}]) as live:
            await timed_post(live, chat())  # a connection, before the scrapes
            scrapes, latencies = [await scrape(live)], []
            for start in (0.0, 0.4):
                await live.at(start)
                runs = []
                for _ in range(n):
                    latency, status, _, _ = await timed_post(live, chat())
                    assert status == 200
                    runs.append(latency)
                latencies.append(runs)
                scrapes.append(await scrape(live))
            assert live.now() < 0.4 + 1.0
            return scrapes, latencies

    scrapes, (clean, delayed) = run_async(go())
    means = []
    for before, after in zip(scrapes, scrapes[1:]):
        assert_phases_add_up(before, after, answered=n)
        count, total = hist(before, after, "e2e")
        means.append(total / count)
    print(f"client: {statistics.median(clean) * 1000:.2f} -> "
          f"{statistics.median(delayed) * 1000:.2f} ms; server e2e mean: "
          f"{means[0] * 1000:.3f} -> {means[1] * 1000:.3f} ms")
    assert all(latency >= 0.050 + service for latency in delayed), delayed
    assert min(delayed) - min(clean) >= 0.049, (clean, delayed)
    assert abs(means[1] - means[0]) <= 0.002 and means[0] == pytest.approx(service, abs=1e-6)
    injected = scrapes[-1]
    assert value(injected, "loadkit_sim_faults_injected_total", kind="overhead") == n


def test_overhead_schedule_validation() -> None:
    (fault,) = parse_faults([{"kind": "overhead", "ms": 25, "start": "1s", "end": "2s"}])
    assert (fault.ms, fault.start, fault.end) == (25.0, 1.0, 2.0)
    assert fault.as_dict() == {"kind": "overhead", "start": 1.0, "end": 2.0, "ms": 25.0}
    for bad, words in [([{"kind": "overhead"}], "needs ms"),
                       ([{"kind": "overhead", "ms": 0}], r"faults\[0\].ms must be > 0"),
                       ([{"kind": "overhead", "ms": 5, "rate": 0.5}], "unknown key")]:
        with pytest.raises(ValueError, match=words):
            parse_faults(bad)
    assert SimConfig.from_mapping({"faults": [{"kind": "overhead", "ms": 3}]}).faults[0].ms == 3


# -- model loads -----------------------------------------------------------------------


def test_model_loads_are_counted_and_waiting_for_one_is_queue_time() -> None:
    """Two replicas load at start-up (2 loads, both loading now), and again
    when a request wakes them from scale-to-zero (4); that request waited the
    whole 200 ms load in the queue."""
    async def go() -> tuple[Samples, Samples, Samples, Samples]:
        async with live_sim(replicas=2, load_ms=200, scale_to_zero_s=0.3, ttft_ms=5, itl_ms=1,
                            output_tokens=2) as live:
            loading = await scrape(live)
            await timed_post(live, chat())  # waits for the rest of the load
            await asyncio.sleep(0.45)  # idle: scaled to zero
            cold = await scrape(live)
            latency, status, _, _ = await timed_post(live, chat())
            assert status == 200 and latency >= 0.200
            woken = await scrape(live)
            await timed_post(live, chat())
            return loading, cold, woken, await scrape(live)

    loading, cold, woken, warm = run_async(go())
    loads = [value(m, "loadkit_sim_model_loads_total") for m in (loading, cold, woken, warm)]
    assert loads == [2, 2, 4, 4], loads
    assert value(loading, "loadkit_sim_model_loading") == 2
    assert value(cold, "loadkit_sim_model_loading") == 0
    assert value(cold, "loadkit_sim_replicas", state="cold") == 2
    assert_phases_add_up(cold, woken, answered=1)
    count, queue = hist(cold, woken, "queue")
    assert 0.200 <= queue <= 0.210, queue  # the load, plus the loop's lateness at its end
    assert hist(woken, warm, "queue") == (1, 0.0)  # warm: straight to a seat


def test_a_revived_replica_loads_again() -> None:
    async def go() -> tuple[Samples, Samples]:
        async with live_sim(load_ms=50, faults=[
                {"kind": "replica_death", "replica": 0, "start": 0.1, "end": 0.15}]) as live:
            await live.at(0.12)
            dead = await scrape(live)
            await live.at(0.25)
            return dead, await scrape(live)

    dead, revived = run_async(go())
    assert value(dead, "loadkit_sim_model_loads_total") == 1
    assert value(dead, "loadkit_sim_replicas", state="dead") == 1
    assert value(revived, "loadkit_sim_model_loads_total") == 2
    assert value(revived, "loadkit_sim_replicas", state="ready") == 1


# -- prefix cache resets ---------------------------------------------------------------

PROMPT = " ".join(f"w{i}" for i in range(44))  # 5 blocks of 8, and 4 more


def test_prefix_cache_resets_make_the_next_prompt_miss() -> None:
    """vLLM's POST /reset_prefix_cache and SGLang's /flush_cache empty the
    cache: the same prompt hits before and misses after; the counters keep
    counting."""
    async def cached(live: Live) -> int:
        _, status, _, doc = await timed_post(live, chat(PROMPT, max_tokens=2))
        assert status == 200
        return int(doc["usage"]["prompt_tokens_details"]["cached_tokens"])

    async def go() -> tuple[list[int], list[tuple[int, str]], Samples]:
        async with live_sim(prefix_cache_blocks=64, block_tokens=8) as live:
            hits, answers = [await cached(live), await cached(live)], []
            for method, path in [("POST", "/reset_prefix_cache"), ("POST", "/flush_cache"),
                                 ("GET", "/flush_cache")]:
                async with live.session.request(method, live.url + path) as r:
                    answers.append((r.status, await r.text()))
                hits += [await cached(live), await cached(live)]
            return hits, answers, await scrape(live)

    hits, answers, m = run_async(go())
    hit = hits[1]
    assert hit > 0 and hits == [0, hit] * 4, hits
    assert answers == [(200, ""), (200, "Cache flushed.\n"), (200, "Cache flushed.\n")]
    assert value(m, "vllm:prefix_cache_hits_total", **MODEL) == 4 * hit


def test_prefix_cache_resets_want_the_api_key() -> None:
    async def go() -> list[int]:
        async with live_sim(api_key="sekrit") as live:  # no prefix cache: still 200
            statuses = []
            for path in ("/reset_prefix_cache", "/flush_cache"):
                for headers in ({}, {"Authorization": "Bearer wrong"},
                                {"Authorization": "Bearer sekrit"}):
                    async with live.session.post(live.url + path, headers=headers) as r:
                        statuses.append(r.status)
            return statuses

    assert run_async(go()) == [401, 401, 200] * 2
