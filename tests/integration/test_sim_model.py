"""The simulator's serving model, measured from outside over loopback HTTP:
prefill and batching costs, queueing past capacity, Little's law on /metrics,
KV-cache admission, priorities, cold starts, embeddings, configuration."""

from __future__ import annotations

import asyncio
import base64
import math
import random
import statistics
import struct
from pathlib import Path

import aiohttp
import pytest

from loadkit.sim import SimConfig
from loadkit.sim.__main__ import _build_config, _parser, main
from loadkit.sim.presets import PRESETS
from support.sim import (
    CHAT,
    COMPLETIONS,
    Health,
    Posted,
    chat,
    finished,
    gauge,
    histogram,
    live_sim,
    prompt_ids,
    run_async,
    timed_post,
    timed_stream,
)

# The simulator's timing model is what is asserted, to the millisecond: run
# alone, not beside other tests under pytest-xdist.
pytestmark = pytest.mark.timing


def _mean_gap_ms(times: list[float]) -> float:
    # Over the middle of the stream; a mean, because a median of gaps is skewed
    # by the event loop's millisecond timer rounding.
    middle = times[len(times) // 8: -len(times) // 8]
    return 1000 * (middle[-1] - middle[0]) / (len(middle) - 1)


# -- cost model ----------------------------------------------------------------------


def test_ttft_is_the_prefill_time_at_low_load() -> None:
    """TTFT = ttft_ms + prefill_ms_per_token x prompt tokens, one request at a time."""
    async def go() -> tuple[dict[int, float], float, dict[str, float]]:
        async with live_sim(ttft_ms=10, prefill_ms_per_token=0.1, itl_ms=2) as live:
            ttfts: dict[int, list[float]] = {100: [], 600: []}
            for _ in range(5):  # interleaved, so both sizes meet the same conditions
                for tokens, out in ttfts.items():
                    sent, times = await timed_stream(live, prompt_ids(tokens, max_tokens=3),
                                                     COMPLETIONS)
                    out.append(1000 * (times[0] - sent))
            m = await live.metrics()
            client_mean = statistics.fmean(ttfts[100] + ttfts[600])
            # The fastest of each: the model's time plus the least this machine adds.
            return {tokens: min(out) for tokens, out in ttfts.items()}, client_mean, m

    ttft, client_mean, m = run_async(go())
    print(f"TTFT minima: 100 tokens {ttft[100]:.2f} ms (20), 600 tokens {ttft[600]:.2f} ms (70)")
    # Never faster than the model (10 + 0.1 x tokens); the slope is the model's
    # exactly, within the loop's timer rounding (what this client and machine
    # add to each request is in both and cancels).
    assert ttft[100] >= 20.0 and ttft[600] >= 70.0, ttft
    assert abs((ttft[600] - ttft[100]) - 0.1 * 500) <= 1.5, ttft
    # The server's own TTFT histogram agrees: a mean of 5 x 20 ms and 5 x 70 ms,
    # plus its part of what the client saw (a time inside each client's TTFT).
    name = 'vllm:time_to_first_token_seconds_{}{{model_name="loadkit-sim"}}'
    mean_ms = 1000 * m[name.format("sum")] / m[name.format("count")]
    assert m[name.format("count")] == 10, m
    assert 44.5 <= mean_ms <= client_mean, (mean_ms, client_mean)
    assert m['vllm:prompt_tokens_total{model_name="loadkit-sim"}'] == 5 * 100 + 5 * 600


def test_decode_step_grows_with_the_batch() -> None:
    """Step = itl_ms + itl_ms_per_seq x running: 4 + 1 = 5 ms alone, 4 + 8 = 12 ms with 8."""
    async def go() -> tuple[list[float], list[list[float]]]:
        async with live_sim(ttft_ms=0, itl_ms=4, itl_ms_per_seq=1) as live:
            _, alone = await timed_stream(live, chat(max_tokens=40))
            batch = await asyncio.gather(*(timed_stream(live, chat(max_tokens=40))
                                           for _ in range(8)))
            return alone, [times for _, times in batch]

    alone, batch = run_async(go())
    print(f"step alone {_mean_gap_ms(alone):.2f} ms (5), batch of 8 "
          f"{[round(_mean_gap_ms(t), 2) for t in batch]} ms (12)")
    assert abs(_mean_gap_ms(alone) - 5.0) <= 0.25, _mean_gap_ms(alone)
    gaps = [_mean_gap_ms(times) for times in batch]
    assert all(abs(g - 12.0) <= 0.3 for g in gaps), gaps


@pytest.mark.slow
@pytest.mark.timing  # client and simulator share one process: a neighbour slows its 80 req/s
def test_queue_grows_past_capacity_as_queueing_predicts() -> None:
    """Two seats, 45 ms per request: capacity 44.4 req/s.  At 30 req/s nobody
    waits; at 80 req/s the queue grows by (80 - 44.4)/s and request k waits
    k x (1/44.4 - 1/80) s."""
    service = 0.010 + 7 * 0.005  # ttft + 7 gaps for 8 tokens
    mu = 2 / service

    async def go() -> tuple[list[float], float, list[float], list[float]]:
        async with live_sim(ttft_ms=10, itl_ms=5, output_tokens=8, max_num_seqs=2) as live:
            async def one(at: float) -> float:
                await live.at(at)
                latency, status, _, _ = await timed_post(live, chat())
                assert status == 200
                return latency

            async def waiting_at(t: float) -> float:
                await live.at(t)
                return gauge(await live.metrics(), "vllm:num_requests_waiting")

            def phase(rate: float, n: int, probe_at: tuple[float, ...]
                      ) -> tuple[asyncio.Future[list[float]], asyncio.Future[list[float]]]:
                start = live.now() + 0.05
                return (asyncio.gather(*(one(start + k / rate) for k in range(n))),
                        asyncio.gather(*(waiting_at(start + t) for t in probe_at)))

            calm, calm_probes = phase(30, 30, (0.3, 0.6, 0.9))
            calm_lat, calm_waiting = await calm, await calm_probes
            storm, waiting = phase(80, 120, (0.5, 1.0, 1.5))  # 1.5 s
            return calm_lat, max(calm_waiting), await waiting, await storm

    calm_lat, calm_max_waiting, waiting, storm_lat = run_async(go())
    # The calm phase's median latency is the service time plus what this
    # machine adds to a request; the storm's waits are measured against it.
    calm = statistics.median(calm_lat)
    print(f"waiting at 0.5/1.0/1.5 s: {waiting} (predicted "
          f"{[round((80 - mu) * t, 1) for t in (0.5, 1.0, 1.5)]}); latency of request 119 "
          f"{storm_lat[119]:.3f} s (predicted {119 * (1 / mu - 1 / 80) + service:.3f}); "
          f"calm median {calm:.4f} s (service {service:.3f})")
    assert calm_max_waiting == 0
    assert min(calm_lat) >= service - 0.001, calm_lat  # never early
    # Nobody waits when calm: the latencies are the service time, give or take
    # this machine's jitter (a wait would add up to a whole service time).
    assert statistics.quantiles(calm_lat, n=10)[-1] - min(calm_lat) <= 0.010, calm_lat
    for t, w in zip((0.5, 1.0, 1.5), waiting):
        predicted = (80 - mu) * t
        # A gauge read at an instant: the client's own sends lag a little on a
        # busy machine (the latencies below hold the model to 5%).
        assert abs(w - predicted) <= 0.2 * predicted + 2, (t, w, predicted)
    for k in (40, 80, 119):
        wait = k * (1 / mu - 1 / 80)
        assert abs(storm_lat[k] - calm - wait) <= 0.05 * (wait + service) + 0.005, (
            k, storm_lat[k], calm, wait)


@pytest.mark.slow
def test_littles_law_holds_on_the_metrics_gauges() -> None:
    """Time-average of running + waiting = arrival rate x mean latency, within 10%,
    with Poisson arrivals, two replicas of three seats and varied lengths."""
    rng = random.Random(11)
    window = (0.8, 5.0)

    async def go() -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        async with live_sim(replicas=2, max_num_seqs=3, ttft_ms=15, prefill_ms_per_token=0.02,
                            itl_ms=4, itl_ms_per_seq=1) as live:
            done: list[tuple[float, float]] = []  # (arrival, latency)

            async def one(at: float, tokens: int) -> None:
                await live.at(at)
                latency, status, _, _ = await timed_post(live, chat("x" * 200,
                                                                    max_tokens=tokens))
                assert status == 200
                done.append((at, latency))

            samples: list[tuple[float, float]] = []

            async def poll() -> None:
                while live.now() < window[1]:
                    m = await live.metrics()
                    samples.append((gauge(m, "vllm:num_requests_running"),
                                    gauge(m, "vllm:num_requests_waiting")))
                    await asyncio.sleep(0.01)

            t, arrivals = live.now(), []
            while t < window[1]:
                t += rng.expovariate(30.0)
                arrivals.append(asyncio.create_task(one(t, rng.choice((8, 16, 32)))))
            await live.at(window[0])
            poller = asyncio.create_task(poll())
            await asyncio.gather(*arrivals)
            await poller
            return done, samples

    done, samples = run_async(go())
    inside = [lat for at, lat in done if window[0] <= at < window[1]]
    span = window[1] - window[0]
    arrival_rate = len(inside) / span
    little = arrival_rate * statistics.fmean(inside)
    in_system = statistics.fmean(r + w for r, w in samples)
    mean_waiting = statistics.fmean(w for _, w in samples)
    print(f"L from /metrics {in_system:.2f} (waiting {mean_waiting:.2f}), "
          f"lambda x W {little:.2f}, {len(samples)} samples, {len(inside)} requests")
    assert mean_waiting >= 0.5  # queueing is part of what is checked
    assert abs(in_system - little) <= 0.10 * little


def test_kv_cache_full_makes_requests_wait() -> None:
    """Each request reserves prompt + max_tokens = 50 of 100 tokens: the third waits."""
    async def go() -> tuple[dict[str, float], list[float], Posted]:
        async with live_sim(ttft_ms=0, itl_ms=5, kv_cache_tokens=100) as live:
            body = prompt_ids(10, max_tokens=40)  # 40 tokens: 195 ms
            reqs = [asyncio.create_task(timed_post(live, body, COMPLETIONS)) for _ in range(3)]
            await asyncio.sleep(0.1)
            m = await live.metrics()
            lat = [r[0] for r in await asyncio.gather(*reqs)]
            too_big = await timed_post(live, prompt_ids(61, max_tokens=40), COMPLETIONS)
            return m, sorted(lat), too_big

    m, lat, too_big = run_async(go())
    assert gauge(m, "vllm:num_requests_running") == 2
    assert gauge(m, "vllm:num_requests_waiting") == 1
    assert gauge(m, "vllm:gpu_cache_usage_perc") == 1.0
    # Two answers at once, the third once one of them is done: never early, and
    # 195 ms after them, whatever this machine adds to each request.
    assert lat[0] >= 0.194 and lat[2] >= 0.389, lat
    assert lat[1] - lat[0] <= 0.01 and abs((lat[2] - lat[1]) - 0.195) <= 0.01, lat
    _, status, _, doc = too_big
    assert status == 400 and doc["error"]["code"] == "context_length_exceeded"


@pytest.mark.parametrize("policy,order", [("priority", [1, 3, 5]), ("fcfs", [5, 1, 3])])
def test_waiting_queue_order(policy: str, order: list[int]) -> None:
    async def go() -> list[int]:
        async with live_sim(ttft_ms=0, itl_ms=10, output_tokens=5, max_num_seqs=1,
                            queue_policy=policy) as live:
            finished: list[int] = []

            async def one(prio: int) -> None:
                _, status, _, _ = await timed_post(live, chat(),
                                                   headers={"x-priority": str(prio)})
                assert status == 200
                finished.append(prio)

            blocker = asyncio.create_task(one(0))
            tasks = []
            for prio in (5, 1, 3):  # arrive in this order while the blocker runs
                await asyncio.sleep(0.005)
                tasks.append(asyncio.create_task(one(prio)))
            await asyncio.gather(blocker, *tasks)
            return finished[1:]

    assert run_async(go()) == order


# -- cold starts --------------------------------------------------------------------


def test_cold_start_is_paid_once_at_start_up_and_after_scale_to_zero() -> None:
    async def go() -> tuple[Health, float, float, float, Health, Health, dict[str, float], float,
                            float]:
        async with live_sim(load_ms=300, scale_to_zero_s=0.5, ttft_ms=5, itl_ms=1,
                            output_tokens=2) as live:
            loading = await live.health()
            first_at = live.now()
            first = (await timed_post(live, chat()))[0]
            second = (await timed_post(live, chat()))[0]
            ready = await live.health()
            await asyncio.sleep(0.7)
            cold, cold_metrics = await live.health(), await live.metrics()
            woken = (await timed_post(live, chat()))[0]
            after = (await timed_post(live, chat()))[0]
            return loading, first_at, first, second, ready, cold, cold_metrics, woken, after

    loading, first_at, first, second, ready, cold, m, woken, after = run_async(go())
    service = 0.006  # ttft 5 ms + 1 gap of 1 ms
    assert loading == (503, {"status": "loading",
                             "replicas": {"ready": 0, "cold": 0, "loading": 1, "dead": 0}})
    # The load is paid once, by whoever meets it, never early: against the warm
    # request right after it (what this machine adds to each cancels), the
    # first one waited for the rest of the 300 ms load, the woken one for all of it.
    assert first >= 0.300 - first_at + service - 0.001, (first, first_at)
    assert abs((first - second) - (0.300 - first_at)) <= 0.015, (first, second, first_at)
    assert ready == (200, {"status": "ok"})
    assert cold == (200, {"status": "cold",
                          "replicas": {"ready": 0, "cold": 1, "loading": 0, "dead": 0}})
    assert m['loadkit_sim_replicas{state="cold"}'] == 1
    assert m['loadkit_sim_gpu_memory_used_bytes{replica="0"}'] == 0  # unloaded
    assert woken >= 0.300 + service - 0.001, woken
    assert abs((woken - after) - 0.300) <= 0.015, (woken, after)


# -- /metrics --------------------------------------------------------------------------


def test_metrics_exposition_and_simulated_gpu_gauges() -> None:
    model = 'odd "name" \\ here'

    async def go() -> dict[str, float]:
        async with live_sim(ttft_ms=0, itl_ms=10, model=model) as live:
            await timed_stream(live, chat(max_tokens=120))  # 1.19 s busy
            return await live.metrics()

    m = run_async(go())  # parse_metrics checks the shape of every line
    label = 'model_name="odd \\"name\\" \\\\ here"'
    buckets = [(k, v) for k, v in m.items()
               if k.startswith("vllm:e2e_request_latency_seconds_bucket")]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0].endswith('le="+Inf"}')
    assert counts[-1] == m[f"vllm:e2e_request_latency_seconds_count{{{label}}}"] == 1
    assert m[f"vllm:generation_tokens_total{{{label}}}"] == 120
    # Busy for 1.19 s from idle: 1 - exp(-1.19 / 1 s) of utilisation, and
    # power follows it from 70 W idle to 700 W.
    util = m['loadkit_sim_gpu_utilization_ratio{replica="0"}']
    assert abs(util - (1 - math.exp(-1.19))) <= 0.04, util
    assert abs(m['loadkit_sim_gpu_power_watts{replica="0"}'] - (70 + 630 * util)) <= 15
    assert not any(k.startswith(("vllm:gpu_util", "DCGM", "nvidia")) for k in m)


# -- embeddings ------------------------------------------------------------------------


def test_embeddings_are_deterministic_unit_vectors_with_token_timing() -> None:
    text = "abcd" * 100  # 100 tokens at ~4 characters each

    async def go(seed: int) -> tuple[Posted, Posted, Posted, Posted, Posted, dict[str, float]]:
        async with live_sim(seed=seed, embedding_ms=20, embedding_ms_per_token=0.1,
                            embedding_dim=64) as live:
            one = await timed_post(live, {"input": text}, "/v1/embeddings")
            two = await timed_post(live, {"input": [text, text + "!"]}, "/v1/embeddings")
            b64 = await timed_post(live, {"input": [1, 2, 3], "encoding_format": "base64",
                                          "dimensions": 8}, "/v1/embeddings")
            ids = await timed_post(live, {"input": [[1, 2, 3]], "dimensions": 8},
                                   "/v1/embeddings")
            bad = await timed_post(live, {"input": []}, "/v1/embeddings")
            return one, two, b64, ids, bad, await live.metrics()

    one, two, b64, ids, bad, m = run_async(go(1))
    again = run_async(go(1))[0]
    other_seed = run_async(go(2))[0]
    latency, status, _, doc = one
    # 20 + 0.1 x 100 tokens = 30 ms, and 40 ms for 200: never early, and 10 ms
    # apart whatever this machine adds to each request.
    assert status == 200 and latency >= 0.0295 and two[0] >= 0.0395, (latency, two[0])
    assert abs((two[0] - latency) - 0.010) <= 0.004, (latency, two[0])
    # On the server's clock, the four answers (30, 40, 20.3 and 20.3 ms) were
    # each out within a few milliseconds of their time.
    count, e2e_s = histogram(m, "vllm:e2e_request_latency_seconds")
    assert count == 4 and 0.1106 - 0.004 <= e2e_s <= 0.1106 + 4 * 0.005, e2e_s
    vec = doc["data"][0]["embedding"]
    assert len(vec) == 64 and abs(math.fsum(x * x for x in vec) - 1.0) < 1e-9
    assert doc["usage"] == {"prompt_tokens": 100, "total_tokens": 100}
    assert doc["object"] == "list" and doc["data"][0]["object"] == "embedding"
    assert two[3]["data"][0]["embedding"] == vec  # same text, same vector
    assert two[3]["data"][1]["embedding"] != vec
    assert [d["index"] for d in two[3]["data"]] == [0, 1]
    assert again[3]["data"][0]["embedding"] == vec
    assert other_seed[3]["data"][0]["embedding"] != vec
    decoded = struct.unpack("<8f", base64.b64decode(b64[3]["data"][0]["embedding"]))
    assert decoded == pytest.approx(ids[3]["data"][0]["embedding"], abs=1e-6)
    assert b64[3]["usage"]["prompt_tokens"] == 3
    assert bad[1] == 400 and bad[3]["error"]["param"] == "input"


# -- configuration -------------------------------------------------------------------


def test_presets_config_files_and_flags(tmp_path: Path) -> None:
    h100 = SimConfig.from_mapping({"preset": "h100-llama3-8b", "seed": 3})
    assert (h100.itl_ms, h100.max_num_seqs, h100.seed) == (6.0, 256, 3)
    assert SimConfig.from_mapping({"preset": "fast", "itl_ms": 7}).itl_ms == 7.0
    with pytest.raises(ValueError, match="preset"):
        SimConfig.from_mapping({"preset": "nope"})
    assert set(PRESETS) >= {"fast", "h100-llama3-8b"}

    conf = tmp_path / "sim.yaml"
    conf.write_text("preset: fast\nreplicas: 2\nfaults:\n"
                    "  - {kind: stall, duration: 250ms, every: 2s, replica: 1}\n")
    cfg = _build_config(_parser().parse_args(["--config", str(conf), "--itl-ms", "3"]))
    assert (cfg.ttft_ms, cfg.itl_ms, cfg.replicas) == (2.0, 3.0, 2)
    assert cfg.faults[0].duration == 0.25 and cfg.faults[0].replica == 1
    # loadkit's launcher passes each key as `--key str(value)`: a list of dicts
    # arrives as a Python literal, JSON works too.
    for text in (str([{"kind": "error", "rate": 0.5, "end": "3s"}]),
                 '[{"kind": "error", "rate": 0.5, "end": "3s"}]'):
        cfg = _build_config(_parser().parse_args(["--faults", text, "--preset", "fast"]))
        assert cfg.faults[0].rate == 0.5 and cfg.faults[0].end == 3.0
        assert SimConfig.from_mapping(cfg.to_mapping()) == cfg  # round trip
    assert main(["--faults", '[{"kind": "stall", "duration": 2, "every": 1}]']) == 2
    assert main(["--queue-policy", "lifo"]) == 2


def test_a_client_that_hangs_up_frees_its_seat() -> None:
    """max_num_seqs=1: a request whose client gave up must not block the next.

    The abandoned answer (1 + 39 x 50 ms) would hold the only seat until
    1.951 s after it was sent, and the next request would queue behind it; on
    the simulator's clock the next one must be answered before then, however
    slow this machine is."""
    async def go() -> tuple[float, float, int, dict[str, float]]:
        async with live_sim(max_num_seqs=1, ttft_ms=1, itl_ms=50, output_tokens=40) as live:
            sent = live.now()
            with pytest.raises(asyncio.TimeoutError):  # the client gives up after 0.2 s
                async with live.session.post(live.url + CHAT, json=chat(max_tokens=40),
                                             timeout=aiohttp.ClientTimeout(total=0.2)) as r:
                    await r.read()
            await asyncio.sleep(0.05)  # the server sees the hang-up
            _, status, _, _ = await timed_post(live, chat(max_tokens=1))
            return sent, live.now(), status, await live.metrics()

    sent, answered, status, m = run_async(go())
    assert status == 200
    assert answered < sent + 0.001 + 39 * 0.050, (sent, answered)
    # The abandoned one never finished: it was aborted (as vLLM counts it).
    assert finished(m, "length") == 1 and finished(m, "abort") == 1
    assert gauge(m, "vllm:num_requests_running") == gauge(m, "vllm:num_requests_waiting") == 0
