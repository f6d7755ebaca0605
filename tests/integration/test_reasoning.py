"""Reasoning models: time to first answer token (TTFO) beside TTFT, in each
dialect (OpenAI chat, the Responses API, Anthropic Messages) in one run.

The simulator as a reasoning model of known timing: 200 reasoning tokens
streamed at 5 ms each (chat's `reasoning_content`, Responses'
`reasoning_text.delta`, Anthropic's `thinking_delta`), then 50 answer tokens at
5 ms, TTFT 40 ms. TTFT stays the first token of any kind (40 ms); TTFO, the
first answer token, comes after the reasoning (40 + 200 x 5 = 1,040 ms);
`reasoning_time` is the 1,000 ms between, and TTFO - TTFT too (what the
machine adds to both cancels); the reasoning and answer tokens
are counted exactly (OpenAI's usage details; Anthropic's usage has no split,
so its thinking events are counted; max_tokens bounds reasoning and answer
together, as OpenAI's, vLLM's and Anthropic's do). Requests are
spaced wider than one answer, so none waits for another.
"""

from __future__ import annotations

import pytest

from support.run import RunWorkload

pytestmark = [pytest.mark.timing, pytest.mark.slow]

TTFT_MS, ITL_MS, THINK, ANSWER = 40.0, 5.0, 200, 50
DIALECTS = ("openai-chat", "openai-responses", "anthropic-messages")


def reasoning_run(run: RunWorkload, stream: bool) -> dict:
    spec = {"name": "reasoning", "duration": 4, "interval": 1,
            "arrival": {"process": "constant", "rate": 6},
            "simulator": {"ttft_ms": TTFT_MS, "itl_ms": ITL_MS, "reasoning_tokens": THINK},
            "scenarios": [{"name": kind, "kind": kind, "stream": stream,
                           "max_tokens": THINK + ANSWER} for kind in DIALECTS],
            "slos": ["ttfo p50 < 2s", "ttft p50 < 100ms"]}
    result, _ = run(spec)
    return result


def test_ttfo_waits_for_the_answer_and_ttft_does_not(run: RunWorkload) -> None:
    result = reasoning_run(run, stream=True)
    series = result["series"]
    n = result["counts"]["completed"]
    assert n >= 21 and result["counts"]["errors"] == 0
    for kind in DIALECTS:
        scope = f"scenario:{kind}"
        ttft, ttfo = series["ttft"][scope]["p50"], series["ttfo"][scope]["p50"]
        thinking = series["reasoning_time"][scope]["p50"]
        print(f"{kind}: ttft {ttft} ms, ttfo {ttfo} ms, reasoning_time {thinking} ms")
        # What this machine adds to a request (loopback, two event loops) is in
        # both TTFT and TTFO and cancels in their difference: the reasoning's
        # 200 x 5 ms, to the server's own clock (2 ms: the timers' rounding).
        assert ttfo - ttft == pytest.approx(THINK * ITL_MS, abs=2.0)
        assert thinking == pytest.approx(THINK * ITL_MS, abs=2.0)
        # Each phase's pace apart: a token every 5 ms in both.
        for phase in ("reasoning_itl", "answer_itl"):
            assert series[phase][scope]["p50"] == pytest.approx(ITL_MS, abs=1.0)
        assert series["reasoning_itl"][scope]["count"] == \
            series["latency"][scope]["count"] * (THINK - 1)
        # Never faster than the model, and TTFT is the reasoning's first token,
        # not the answer's (a few ms of this machine at most, not a second).
        assert TTFT_MS <= ttft < TTFT_MS + 10 and ttfo >= TTFT_MS + THINK * ITL_MS
        assert series["ttfo"][scope]["count"] == series["ttft"][scope]["count"] \
            == series["latency"][scope]["count"] >= 4  # of the 24, drawn by weight
    tokens = result["tokens"]
    assert tokens["output_total"] == n * (THINK + ANSWER)
    assert tokens["reasoning_total"] == n * THINK
    assert {s["name"]: s["verdict"] for s in result["slos"]} == {
        "ttfo p50 < 2s [all]": "pass", "ttft p50 < 100ms [all]": "pass"}


def test_a_non_streamed_reasoning_answer_counts_its_reasoning(run: RunWorkload) -> None:
    """No stream, no token times: no TTFT or TTFO, but the usage's reasoning
    tokens are counted (OpenAI's dialects say them; a whole Anthropic answer
    does not, and has no events to count without a tokenizer), and the
    answer is whole."""
    result = reasoning_run(run, stream=False)
    n = result["counts"]["completed"]
    assert n >= 21 and result["counts"]["errors"] == 0
    assert "ttfo" not in result["series"] and "ttft" not in result["series"]
    said = n - result["series"]["latency"]["scenario:anthropic-messages"]["count"]
    assert result["tokens"]["reasoning_total"] == said * THINK
    assert result["tokens"]["output_total"] == n * (THINK + ANSWER)
