"""Traces with prefix structure (issue 15, item 3): the Mooncake format. Each
request's prompt is built from its 512-token blocks; the record server logs
every prompt, and what they share is checked against the trace's block ids."""

from __future__ import annotations

import os
import random
from collections import Counter

import pytest

from loadkit.workload.traces import load_trace
from support.run import ROOT, RunWorkload, StartServer
from support.truth import fetch

SAMPLE = ROOT / "workloads" / "traces" / "mooncake-sample.jsonl"
BLOCK = 512


def block_ids(words: list[str]) -> tuple[int, ...]:
    """Every block starts with the word `b<id>`."""
    return tuple(int(w[1:]) for w in words[::BLOCK])


@pytest.mark.slow
def test_prompts_share_exactly_their_common_blocks(server: StartServer, run: RunWorkload) -> None:
    rows = [r for r in load_trace(SAMPLE) if r.time < 60.0]  # the window sent below
    with server("record") as url:
        result, _ = run({"name": "mooncake", "target": url, "duration": 3, "warmup": 0,
                         "arrival": {"process": "trace", "path": str(SAMPLE), "speedup": 20},
                         "scenarios": [{"name": "chat", "kind": "openai-chat",
                                        "stream": False}]}, probe=False)
        log = fetch(url + "/log")
    assert result["counts"]["completed"] == len(log) == len(rows)
    prompts = [entry["body"]["messages"][0]["content"].split() for entry in log]
    # Every row was sent once, with its blocks and its length.
    assert Counter((block_ids(p), len(p)) for p in prompts) == \
        Counter((r.blocks, r.prompt_tokens) for r in rows)
    pairs = random.Random(1).sample(
        [(a, b) for a in range(len(prompts)) for b in range(a + 1, len(prompts))], 400)
    shared_some = 0
    for a, b in pairs:
        ids_a, ids_b = block_ids(prompts[a]), block_ids(prompts[b])
        k = len(os.path.commonprefix([ids_a, ids_b]))
        common = len(os.path.commonprefix([prompts[a], prompts[b]]))
        full = min(len(prompts[a]), len(prompts[b]))
        assert common == min(k * BLOCK, full), (a, b, k, common)
        shared_some += k > 0
    assert shared_some > 50  # the trace's prefix structure is there to see
