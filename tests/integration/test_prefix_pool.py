"""Shared prefixes (issue 15, item 2) and the simulator's prefix cache (item 7).

The record server logs every body: the prefixes it sees are counted there.
On the simulator with its cache, TTFT is compared with a run whose prompts
share nothing, on the same simulator settings in the same test."""

from __future__ import annotations

import contextlib
import math
import re
import select
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from support.run import RunWorkload, StartServer
from support.truth import fetch

NONCE = re.compile(r"(\d+): ")  # the request's number: where its unique part starts


def chat(**extra: Any) -> dict[str, Any]:
    return {"name": "chat", "kind": "openai-chat", "stream": False, "prompt_tokens": 6,
            "max_tokens": 2, **extra}


@pytest.mark.slow
@pytest.mark.parametrize("pick", ["uniform", "zipf"])
def test_the_server_sees_exactly_the_pool_at_the_declared_frequencies(
        server: StartServer, run: RunWorkload, pick: str) -> None:
    pool, length, n = 5, 40, 600
    with server("record") as url:
        result, _ = run({"name": "prefixes", "target": url, "duration": 3, "warmup": 0,
                         "arrival": {"process": "constant", "rate": n / 3},
                         "scenarios": [chat(prefix={"count": pool, "tokens": length,
                                                    "pick": pick, "s": 1.2})]}, probe=False)
        log = fetch(url + "/log")
    assert result["counts"]["completed"] == len(log) == n
    prefixes: Counter[str] = Counter()
    for entry in log:
        content = entry["body"]["messages"][0]["content"]
        nonce = NONCE.search(content)
        assert nonce is not None, content
        prefix, _, rest = content.partition(nonce.group(0))
        prefixes[prefix] += 1
        assert 1 + len(rest.split()) == 6  # the unique part, its number one: prompt_tokens
    assert len(prefixes) == pool and all(len(p.split()) == length for p in prefixes)
    weights = [1.0] * pool if pick == "uniform" else [1 / (i + 1) ** 1.2 for i in range(pool)]
    expected = sorted((w / sum(weights) for w in weights), reverse=True)
    for seen, p in zip(sorted(prefixes.values(), reverse=True), expected):
        # Each prefix's count within 4 sigma of its binomial expectation.
        assert abs(seen - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1, (seen, n * p)


PREFILL_MS, PREFIX, SUFFIX = 0.05, 800, 16


@contextlib.contextmanager
def simulator(*flags: str) -> Iterator[str]:
    """`python -m loadkit.sim` in its own process; yields its base URL."""
    proc = subprocess.Popen([sys.executable, "-m", "loadkit.sim", "--port", "0", *flags],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("LOADKIT_SIM_LISTENING "), line
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def counter(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics") as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


@pytest.mark.slow
@pytest.mark.timing  # two runs' TTFT medians differ by the saving, within 4 ms
def test_cached_prefixes_cut_ttft_by_the_modelled_prefill(run: RunWorkload) -> None:
    """One shared 800-token prefix against unique prompts of the same length,
    on one simulator with its prefix cache: each hit skips the prefill of its
    cached blocks (TTFT lower by that, within 10%), and the cached tokens
    loadkit reports are the simulator's own count."""
    def go(url: str, prefix: dict | None) -> dict:
        extra = {"prefix": prefix} if prefix else {}
        result, _ = run({"name": "cache", "target": url, "duration": 3, "warmup": 0,
                         "arrival": {"process": "constant", "rate": 40},
                         "scenarios": [chat(stream=True, max_tokens=4,
                                            prompt_tokens=SUFFIX + (0 if prefix else PREFIX),
                                            **extra)]}, probe=False, quiet_gc=True)
        return result

    with simulator("--ttft-ms", "5", "--itl-ms", "1", "--prefill-ms-per-token",
                   str(PREFILL_MS), "--prefix-cache-blocks", "1000") as url:
        unique = go(url, None)
        assert counter(url, "vllm:prefix_cache_hits_total") == 0
        shared = go(url, {"count": 1, "tokens": PREFIX})
        sim_hits = counter(url, "vllm:prefix_cache_hits_total")
    t, n = shared["tokens"], shared["counts"]["completed"]
    assert unique["tokens"]["cached_total"] == 0
    assert t["cached_total"] == sim_hits > 0  # the server's own count, request by request
    # A cache that held this run's own prompts: as the run explains it
    assert shared["cache"]["state"] == "as expected"
    assert shared["cache"]["expected_share"] == pytest.approx(
        shared["cache"]["observed_share"], abs=0.01)
    # Every request but the first finds the prefix's 800 tokens: 50 whole
    # blocks of 16 (the simulator counts a token a word, as prompts are built).
    per_hit = t["cached_total"] / (n - 1)
    assert per_hit == PREFIX, per_hit
    # The last interval that completed requests (the run's last may be a sliver).
    last = [iv for iv in shared["timeseries"] if iv["completed"]][-1]
    assert last["cached_share"] == pytest.approx(
        per_hit / (t["prompt_total"] / n), rel=0.05)
    saving_ms = PREFILL_MS * per_hit
    delta = unique["series"]["ttft"]["all"]["p50"] - shared["series"]["ttft"]["all"]["p50"]
    assert abs(delta - saving_ms) <= 0.1 * saving_ms, (delta, saving_ms)


@pytest.mark.slow
def test_a_cache_warm_from_an_earlier_run_makes_a_pass_inconclusive(run: RunWorkload) -> None:
    """The same seeded run twice against one simulator with a prefix cache:
    the second run's prompts are the first's, so the server serves them from
    its cache while the run itself explains no hit (each prompt starts with its
    own number). A pass is then inconclusive, with both shares; `cache: cold`
    resets the cache before the clock, and the pass stands."""
    spec = {"name": "again", "duration": 2, "warmup": 0,
            "arrival": {"process": "constant", "rate": 20},
            "scenarios": [chat(prompt_tokens=64)], "slos": ["latency p50 < 5s"]}
    with simulator("--ttft-ms", "1", "--itl-ms", "1", "--prefix-cache-blocks", "10000") as url:
        first, _ = run({**spec, "target": url}, probe=False)
        again, _ = run({**spec, "target": url}, probe=False)
        cold, _ = run({**spec, "target": url, "cache": "cold"}, probe=False)
    assert (first["cache"]["state"], first["verdict"]) == ("as expected", "pass")
    assert first["cache"]["observed_share"] == first["cache"]["expected_share"] == 0
    warm = again["cache"]
    assert (warm["state"], again["verdict"]) == ("warm", "inconclusive")
    assert warm["observed_share"] > 0.9 and warm["expected_share"] == 0
    assert "warm from before the run" in warm["reason"] and not warm["reset"]
    assert (cold["cache"]["state"], cold["verdict"], cold["cache"]["reset"]) == \
        ("as expected", "pass", True)
