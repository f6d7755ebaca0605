"""Agents, structured output and keys in every chat dialect (OpenAI chat, the
Responses API, Anthropic Messages), against the simulator on loopback.

A recording proxy in front of the simulator sees what the server was sent
and when: a tool's result goes back no sooner than the tool latency after
the answer that called it, with the assembled call and the whole history
in the dialect's own shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pytest

from loadkit.errors import ExitCode, TargetRejected
from support.recording import Exchange, recording_sim
from support.run import RunWorkload

DIALECTS = ("openai-chat", "openai-responses", "anthropic-messages")
WEATHER = {"name": "get_weather", "description": "the weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                           "days": {"type": "integer"}},
                          "required": ["city"]}}
TOOL_LATENCY_S = 0.3


def conversation(body: dict) -> list[dict]:
    return body.get("messages") or body.get("input") or []


def result_of_tool(kind: str, body: dict) -> str | None:
    """The call id a request answers with its tool's result, if it does."""
    last = conversation(body)[-1]
    if kind == "openai-chat":
        return last.get("tool_call_id") if last.get("role") == "tool" else None
    if kind == "openai-responses":
        return last.get("call_id") if last.get("type") == "function_call_output" else None
    content = last.get("content")
    if isinstance(content, list) and content and content[0].get("type") == "tool_result":
        return content[0]["tool_use_id"]
    return None


def call_in_history(kind: str, body: dict, call_id: str) -> dict:
    """The call's arguments as the history carries them back."""
    for m in conversation(body):
        if kind == "openai-chat":
            for c in m.get("tool_calls") or []:
                if c["id"] == call_id:
                    return json.loads(c["function"]["arguments"])
        elif kind == "openai-responses":
            if m.get("type") == "function_call" and m["call_id"] == call_id:
                return json.loads(m["arguments"])
        elif isinstance(m.get("content"), list):
            for block in m["content"]:
                if block.get("type") == "tool_use" and block["id"] == call_id:
                    return block["input"]
    raise AssertionError(f"call {call_id} is not in the history")


@pytest.mark.slow
def test_a_tool_result_goes_back_after_the_tool_latency_with_the_whole_history(
        run: RunWorkload) -> None:
    spec = {"name": "agents", "duration": 2, "interval": 1,
            "arrival": {"process": "constant", "rate": 6},
            "scenarios": [{"name": kind, "kind": kind, "model": "sim", "max_tokens": 24,
                           "prompt_tokens": 8, "tools": [WEATHER],
                           "tool_latency": f"{TOOL_LATENCY_S}s", "tool_result": "sunny",
                           "session": {"turns": 2, "think_time": 0.1}} for kind in DIALECTS],
            "slos": ["tool_call_time p50 < 1s"]}
    with recording_sim(ttft_ms=10, itl_ms=2) as rec:
        result, _ = run({**spec, "target": rec.url})
        posts = rec.posts()
    assert result["counts"]["errors"] == 0, result["errors"]["examples"]
    answered: dict[str, int] = {}
    for i, tool_turn in enumerate(posts):
        kind = next(k for k in DIALECTS if tool_turn.path.endswith(
            {"openai-chat": "/chat/completions", "openai-responses": "/responses",
             "anthropic-messages": "/messages"}[k]))
        call_id = result_of_tool(kind, tool_turn.body)
        if call_id is None:
            continue
        caller = [e for e in posts[:i] if call_id.encode() in e.answer]
        assert len(caller) == 1, f"{kind}: no one answer made call {call_id}"
        called: Exchange = caller[0]
        # Never before the tool latency, counted from the answer's end.
        assert tool_turn.arrived - called.ended >= TOOL_LATENCY_S, kind
        # The whole conversation so far, then the call and its result.
        sent = conversation(called.body)
        assert conversation(tool_turn.body)[:len(sent)] == sent, kind
        jsonschema.validate(call_in_history(kind, tool_turn.body, call_id),
                            WEATHER["parameters"])
        answered[kind] = answered.get(kind, 0) + 1
    assert set(answered) == set(DIALECTS), answered
    sessions = result["sessions"]
    assert sessions["completed"] == sessions["started"] > 0
    calls = result["series"]["tool_call_time"]
    for kind in DIALECTS:  # every session's two user turns called the tool (the
        # first turn is the scenario's, the second one of its later turns)
        first, later = calls[f"scenario:{kind}"]["count"], calls[f"scenario:{kind}:later"]["count"]
        assert first + later == answered[kind] == 2 * first
    assert [s["verdict"] for s in result["slos"]] == ["pass"]


@pytest.mark.slow
def test_malformed_tool_calls_are_failed_checks_with_an_example(run: RunWorkload) -> None:
    spec = {"name": "broken-calls", "duration": 2, "interval": 1,
            "arrival": {"process": "constant", "rate": 6},
            "simulator": {"ttft_ms": 5, "itl_ms": 1, "malformed_tool_share": 1.0},
            "scenarios": [{"name": kind, "kind": kind, "max_tokens": 16, "tools": [WEATHER]}
                          for kind in DIALECTS]}
    result, _ = run(spec, probe=False)
    counts = result["counts"]
    assert counts["completed"] == 0 and counts["errors"] >= 9
    assert result["errors"]["by_kind"]["check_failed"] == counts["errors"]
    assert all("malformed tool call get_weather" in m
               for m in result["errors"]["examples"]["check_failed"])


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_the_invalid_share_of_structured_answers_is_what_the_server_sent(
        run: RunWorkload, stream: bool) -> None:
    share = 0.3
    schema = {"type": "object", "properties": {"city": {"type": "string"},
                                               "temp": {"type": "number"}},
              "required": ["city", "temp"]}
    spec = {"name": "structured", "duration": 3, "interval": 1,
            "arrival": {"process": "constant", "rate": 100},
            "simulator": {"ttft_ms": 1, "itl_ms": 0, "invalid_json_share": share},
            "scenarios": [{"name": kind, "kind": kind, "max_tokens": 24, "stream": stream,
                           "response_format": {"name": "weather", "schema": schema}}
                          for kind in DIALECTS]}
    result, _ = run(spec, probe=False)
    counts = result["counts"]
    n = counts["completed"] + counts["errors"]
    failed = result["errors"]["by_kind"].get("check_failed", 0)
    assert failed == counts["errors"] and n >= 250
    sigma = math.sqrt(share * (1 - share) / n)
    print(f"{failed} of {n} invalid ({failed / n:.3f}; share {share}, sigma {sigma:.3f})")
    assert abs(failed / n - share) <= 4 * sigma
    assert all("structured output" in m for m in result["errors"]["examples"]["check_failed"])


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "words"), [
    ("openai-chat", "Incorrect API key"), ("openai-responses", "Incorrect API key"),
    ("anthropic-messages", "invalid x-api-key")])
def test_a_wrong_key_stops_before_the_clock_with_the_server_s_words(
        run: RunWorkload, kind: str, words: str) -> None:
    tenant = {"name": "acme", "arrival": {"process": "constant", "rate": 5}}
    spec: dict[str, Any] = {
            "name": "keys", "duration": 1, "simulator": {"api_key": "right"},
            "tenants": [{**tenant, "api_key": "wrong"}],
            "scenarios": [{"name": "s", "kind": kind, "model": "sim", "max_tokens": 4}]}
    with pytest.raises(TargetRejected, match=words) as refused:
        run(spec)
    assert refused.value.exit_code == ExitCode.UNTRUSTED
    assert "HTTP 401" in str(refused.value)
    # Unnamed, the model is asked for first: the same refusal, from /v1/models.
    unnamed = {**spec, "scenarios": [{"name": "s", "kind": kind}]}
    with pytest.raises(TargetRejected, match="401"):
        run(unnamed)
    # The right key passes, in the dialect's own header.
    right = {**spec, "tenants": [{**tenant, "api_key": "right"}]}
    result, _ = run(right)
    assert result["counts"]["errors"] == 0 and result["counts"]["completed"] >= 4
