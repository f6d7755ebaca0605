"""Reasoning models: time to first answer token (TTFO) beside TTFT.

The simulator as a reasoning model of known timing: 200 reasoning tokens
streamed as `reasoning_content` at 5 ms each, then 50 answer tokens at
5 ms, TTFT 40 ms. TTFT stays the first token of any kind (40 ms); TTFO, the
first answer token, comes after the reasoning (40 + 200 x 5 = 1,040 ms);
`reasoning_time` is the 1,000 ms between, and TTFO - TTFT too (what the
machine adds to both cancels); the reasoning and answer tokens
are counted exactly (the server's usage details; max_tokens bounds
reasoning and answer together, as OpenAI's and vLLM's do). Requests are
spaced wider than one answer, so none waits for another.
"""

from __future__ import annotations

import pytest

from support.run import RunWorkload

pytestmark = [pytest.mark.timing, pytest.mark.slow]

TTFT_MS, ITL_MS, THINK, ANSWER = 40.0, 5.0, 200, 50


def reasoning_run(run: RunWorkload, stream: bool) -> dict:
    spec = {"name": "reasoning", "duration": 4, "interval": 1,
            "arrival": {"process": "constant", "rate": 2},
            "simulator": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "reasoning_tokens": THINK},
            "scenarios": [{"name": "think", "kind": "openai-chat", "stream": stream,
                           "max_tokens": THINK + ANSWER}],
            "slos": ["ttfo p50 < 2s", "ttft p50 < 100ms"]}
    result, _ = run(spec)
    return result


def test_ttfo_waits_for_the_answer_and_ttft_does_not(run: RunWorkload) -> None:
    result = reasoning_run(run, stream=True)
    series = result["series"]
    n = result["counts"]["completed"]
    assert n >= 7 and result["counts"]["errors"] == 0
    ttft, ttfo = series["ttft"]["all"]["p50"], series["ttfo"]["all"]["p50"]
    thinking = series["reasoning_time"]["all"]["p50"]
    print(f"ttft {ttft} ms, ttfo {ttfo} ms, reasoning_time {thinking} ms")
    # What this machine adds to a request (loopback, two event loops) is in
    # both TTFT and TTFO and cancels in their difference: the reasoning's
    # 200 x 5 ms, to the server's own clock (2 ms: the timers' rounding).
    assert ttfo - ttft == pytest.approx(THINK * ITL_MS, abs=2.0)
    assert thinking == pytest.approx(THINK * ITL_MS, abs=2.0)
    # Never faster than the model, and TTFT is the reasoning's first token,
    # not the answer's (a few ms of this machine at most, not a second).
    assert TTFT_MS <= ttft < TTFT_MS + 10 and ttfo >= TTFT_MS + THINK * ITL_MS
    assert series["ttfo"]["all"]["count"] == series["ttft"]["all"]["count"] == n
    tokens = result["tokens"]
    assert tokens["output_total"] == n * (THINK + ANSWER)
    assert tokens["reasoning_total"] == n * THINK
    assert {s["name"]: s["verdict"] for s in result["slos"]} == {
        "ttfo p50 < 2s [all]": "pass", "ttft p50 < 100ms [all]": "pass"}


def test_a_non_streamed_reasoning_answer_counts_its_reasoning(run: RunWorkload) -> None:
    """No stream, no token times: no TTFT or TTFO, but the usage's reasoning
    tokens are counted, and the answer is whole."""
    result = reasoning_run(run, stream=False)
    n = result["counts"]["completed"]
    assert n >= 7 and result["counts"]["errors"] == 0
    assert "ttfo" not in result["series"] and "ttft" not in result["series"]
    assert result["tokens"]["reasoning_total"] == n * THINK
    assert result["tokens"]["output_total"] == n * (THINK + ANSWER)
