"""Several tokens per streamed event (issue 15, item 5): `itl` is per token,
`inter_chunk` per event. Against the simulator's `stream_interval` (vLLM's
--stream-interval), whose true per-token decode time is set here."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.run import RunWorkload
from support.tokenizer import train

DECODE_MS, EVERY = 8.0, 4
TOKENS = 1 + 8 * EVERY  # the first token alone, then 8 events of 4


def spec(every: int, usage_per_event: bool) -> dict:
    return {"name": "events", "duration": 4, "warmup": 0,
            "simulator": {"ttft_ms": 5, "itl_ms": DECODE_MS, "stream_interval": every},
            "arrival": {"process": "constant", "rate": 10},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                           "max_tokens": TOKENS, "exact_output": True,
                           "usage_per_event": usage_per_event}]}


@pytest.mark.slow
@pytest.mark.timing  # ITL medians within 0.5 ms of the server's step
@pytest.mark.parametrize("per_event", [True, False], ids=["usage-in-every-event", "estimated"])
def test_events_of_four_tokens_give_the_per_token_itl(run: RunWorkload, per_event: bool) -> None:
    result, _ = run(spec(EVERY, per_event), quiet_gc=True)
    itl, chunk = result["series"]["itl"]["all"], result["series"]["inter_chunk"]["all"]
    n = result["counts"]["completed"]
    assert n >= 30 and result["counts"]["errors"] == 0
    # Per token: 8 events x 4 tokens per request, each gap split over its 4 tokens.
    assert itl["count"] == n * 8 * EVERY and chunk["count"] == n * 8
    assert abs(itl["p50"] - DECODE_MS) <= 0.5, itl
    assert abs(chunk["p50"] - EVERY * DECODE_MS) <= 1.0, chunk
    assert result["tokens"]["itl_source"] == {"usage" if per_event else "estimated": n}
    assert result["tokens"]["output_total"] == n * TOKENS


@pytest.mark.slow
@pytest.mark.timing  # ITL medians within 0.5 ms of the server's step
def test_four_tokens_in_every_event_the_first_too_give_the_per_token_itl(
        run: RunWorkload) -> None:
    """As hosted APIs stream: 4 tokens in each of 8 events, the first
    included, and only the total in usage. The first event's share of the
    text says it held 4 tokens; read as one (vLLM's stream interval), each
    later event would hold 31/7 and the ITL read 7.2 ms."""
    w = spec(1, False)
    w["simulator"] = {**w["simulator"], "faults": [{"kind": "merge_tokens", "tokens": EVERY,
                                                     "first": True}]}
    w["scenarios"][0]["max_tokens"] = 8 * EVERY
    result, _ = run(w, quiet_gc=True)
    itl, chunk = result["series"]["itl"]["all"], result["series"]["inter_chunk"]["all"]
    n = result["counts"]["completed"]
    assert n >= 30 and result["counts"]["errors"] == 0
    assert result["tokens"]["itl_source"] == {"estimated": n}
    assert chunk["count"] == n * 7 and abs(chunk["p50"] - EVERY * DECODE_MS) <= 1.0, chunk
    # One sample a token after the first event, whatever it was estimated to hold.
    assert n * (8 * EVERY - EVERY - 1) <= itl["count"] <= n * (8 * EVERY - EVERY + 1)
    assert abs(itl["p50"] - DECODE_MS) <= 0.5, itl


@pytest.mark.slow
@pytest.mark.timing  # ITL medians within 0.5 ms of the server's step
def test_a_tokenizer_counts_each_events_tokens(run: RunWorkload, tmp_path: Path) -> None:
    """No usage per event: the tokenizer (trained here; each of the simulator's
    words is one token) counts each event's text."""
    train(tmp_path / "tok.json")
    result, _ = run({**spec(EVERY, False), "tokenizer": "tok.json"}, quiet_gc=True)
    itl, n = result["series"]["itl"]["all"], result["counts"]["completed"]
    assert result["tokens"]["itl_source"] == {"tokenizer": n}
    assert itl["count"] == n * 8 * EVERY and abs(itl["p50"] - DECODE_MS) <= 0.5, itl


@pytest.mark.slow
@pytest.mark.timing  # ITL medians within 0.5 ms of the server's step
def test_one_token_per_event_itl_and_inter_chunk_are_the_same_samples(run: RunWorkload) -> None:
    result, _ = run(spec(1, True), quiet_gc=True)
    itl, chunk = result["series"]["itl"]["all"], result["series"]["inter_chunk"]["all"]
    n = result["counts"]["completed"]
    assert itl == chunk and itl["count"] == n * (TOKENS - 1)
    assert abs(itl["p50"] - DECODE_MS) <= 0.5, itl
    assert result["tokens"]["itl_source"] == {"usage": n}
