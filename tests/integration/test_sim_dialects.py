"""The simulator's three chat-like dialects on a real loopback socket: OpenAI
chat completions, OpenAI Responses (``/v1/responses``) and Anthropic Messages
(``/v1/messages``), streamed and not: their event sequences, reasoning before
the answer (counted and timed), tool calls and structured output (valid
against the schema, or broken on purpose), ``previous_response_id``, the API
key, and Anthropic's required header and ``max_tokens``.

Each dialect has an adapter below that builds its request and reads what it
said back into one shape (:class:`Said`), so most tests run once per dialect.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
import pytest

from loadkit.sim import SimConfig
from loadkit.sim.responses_wire import ResponseStore
from support.sim import Live, live_sim, run_async

ANTHROPIC_VERSION = {"anthropic-version": "2023-06-01"}

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "hourly": {"type": "boolean"},
        "coords": {"type": "object", "properties": {"lat": {"type": "number"},
                                                    "lon": {"type": "number"}},
                   "required": ["lat", "lon"], "additionalProperties": False},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}
CLOCK = {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
TOOLS = [("get_weather", WEATHER), ("get_time", CLOCK)]

REPORT = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "status": {"enum": ["draft", "final"]},
        "items": {"type": "array", "items": {"$ref": "#/$defs/item"}},
        "note": {"anyOf": [{"type": "null"}, {"type": "string"}]},
    },
    "required": ["title", "score", "status", "items", "note"],
    "additionalProperties": False,
    "$defs": {"item": {"type": "object",
                       "properties": {"name": {"type": "string"},
                                      "qty": {"type": "integer", "minimum": 1}},
                       "required": ["name", "qty"], "additionalProperties": False}},
}


@dataclass
class Event:
    at: float  # arrival, seconds on the simulator's clock
    name: str | None  # the SSE `event:` field
    data: Any  # the parsed `data:` JSON, or "[DONE]"


@dataclass
class Said:
    """What one response said, whatever its dialect: per event (streamed) or
    whole (one entry), with arrival times."""

    reasoning: list[tuple[float, str]] = field(default_factory=list)
    answer: list[tuple[float, str]] = field(default_factory=list)
    tool: list[tuple[float, str]] = field(default_factory=list)  # argument fragments
    tool_name: str | None = None
    prompt_tokens: int = -1
    output_tokens: int = -1
    reasoning_tokens: int | None = None  # None: the dialect does not report it
    finish: str = ""  # finish_reason / status / stop_reason
    rid: str = ""

    @property
    def arguments(self) -> str:
        return "".join(t for _, t in self.tool)

    @property
    def text(self) -> str:
        return "".join(t for _, t in self.answer)

    @property
    def thought(self) -> str:
        return "".join(t for _, t in self.reasoning)


# -- the dialects ---------------------------------------------------------------------


class Chat:
    name = "chat"
    path = "/v1/chat/completions"
    headers: dict[str, str] = {}
    finish = {"words": "length", "tool": "tool_calls", "doc": "stop"}

    def body(self, prompt: str, max_tokens: int, stream: bool, tools: bool = False,
             choice: str | None = None, schema: dict[str, Any] | None = None,
             after_tool: bool = False) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        if after_tool:
            messages += [
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny and mild"}]
        body: dict[str, Any] = {"model": "m", "messages": messages, "max_tokens": max_tokens,
                                "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        if tools:
            body["tools"] = [{"type": "function", "function": {
                "name": n, "description": "d", "parameters": p}} for n, p in TOOLS]
        if choice is not None:
            body["tool_choice"] = choice if choice in ("auto", "required", "none") else {
                "type": "function", "function": {"name": choice}}
        if schema is not None:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "report", "schema": schema}}
        return body

    def streamed(self, events: list[Event]) -> Said:
        said = Said()
        assert events[-1].data == "[DONE]" and all(e.name is None for e in events)
        for e in events[:-1]:
            d = e.data
            assert d["object"] == "chat.completion.chunk"
            said.rid = d["id"]
            if d.get("usage"):
                u = d["usage"]
                said.prompt_tokens, said.output_tokens = u["prompt_tokens"], \
                    u["completion_tokens"]
                said.reasoning_tokens = u.get("completion_tokens_details", {}).get(
                    "reasoning_tokens", 0)
            if not d["choices"]:
                continue
            choice = d["choices"][0]
            delta = choice["delta"]
            if choice["finish_reason"]:
                said.finish = choice["finish_reason"]
            if delta.get("reasoning_content"):
                said.reasoning.append((e.at, delta["reasoning_content"]))
            if delta.get("content"):
                said.answer.append((e.at, delta["content"]))
            for call in delta.get("tool_calls") or []:
                if "id" in call:
                    said.tool_name = call["function"]["name"]
                if call["function"]["arguments"]:
                    said.tool.append((e.at, call["function"]["arguments"]))
        return said

    def whole(self, doc: dict[str, Any], at: float) -> Said:
        assert doc["object"] == "chat.completion"
        choice = doc["choices"][0]
        msg, u = choice["message"], doc["usage"]
        said = Said(finish=choice["finish_reason"], rid=doc["id"],
                    prompt_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"],
                    reasoning_tokens=u.get("completion_tokens_details", {}).get(
                        "reasoning_tokens", 0))
        if msg.get("reasoning_content"):
            said.reasoning.append((at, msg["reasoning_content"]))
        if msg["content"] is not None:
            said.answer.append((at, msg["content"]))
        for call in msg.get("tool_calls") or []:
            assert call["type"] == "function" and call["id"].startswith("call_")
            assert msg["content"] is None
            said.tool_name = call["function"]["name"]
            said.tool.append((at, call["function"]["arguments"]))
        return said


class Responses:
    name = "responses"
    path = "/v1/responses"
    headers: dict[str, str] = {}
    finish = {"words": "incomplete", "tool": "completed", "doc": "completed"}

    def body(self, prompt: str, max_tokens: int, stream: bool, tools: bool = False,
             choice: str | None = None, schema: dict[str, Any] | None = None,
             after_tool: bool = False) -> dict[str, Any]:
        items: Any = prompt
        if after_tool:
            items = [{"role": "user", "content": [{"type": "input_text", "text": prompt}]},
                     {"type": "function_call", "call_id": "call_1", "name": "get_weather",
                      "arguments": '{"city": "Oslo"}'},
                     {"type": "function_call_output", "call_id": "call_1",
                      "output": "sunny and mild"}]
        body: dict[str, Any] = {"model": "m", "input": items, "max_output_tokens": max_tokens,
                                "stream": stream}
        if tools:
            body["tools"] = [{"type": "function", "name": n, "description": "d",
                              "parameters": p} for n, p in TOOLS]
        if choice is not None:
            body["tool_choice"] = choice if choice in ("auto", "required", "none") else {
                "type": "function", "name": choice}
        if schema is not None:
            body["text"] = {"format": {"type": "json_schema", "name": "report",
                                       "schema": schema, "strict": True}}
        return body

    def streamed(self, events: list[Event]) -> Said:
        said = Said()
        assert [e.data["sequence_number"] for e in events] == list(range(len(events)))
        for e in events:
            assert e.name == e.data["type"]
            d = e.data
            if e.name == "response.reasoning_text.delta":
                said.reasoning.append((e.at, d["delta"]))
            elif e.name == "response.output_text.delta":
                said.answer.append((e.at, d["delta"]))
            elif e.name == "response.function_call_arguments.delta":
                said.tool.append((e.at, d["delta"]))
            elif e.name == "response.output_item.added" and d["item"]["type"] == "function_call":
                said.tool_name = d["item"]["name"]
            elif e.name == "response.completed":
                whole = self.whole(d["response"], e.at)
                said.prompt_tokens, said.output_tokens = whole.prompt_tokens, \
                    whole.output_tokens
                said.reasoning_tokens, said.finish, said.rid = whole.reasoning_tokens, \
                    whole.finish, whole.rid
                # the whole response repeats what the deltas said
                assert whole.thought == said.thought and whole.text == said.text
                assert whole.arguments == said.arguments
        assert events[-1].name == "response.completed"
        return said

    def whole(self, doc: dict[str, Any], at: float) -> Said:
        assert doc["object"] == "response" and doc["id"].startswith("resp_")
        u = doc["usage"]
        said = Said(finish=doc["status"], rid=doc["id"], prompt_tokens=u["input_tokens"],
                    output_tokens=u["output_tokens"],
                    reasoning_tokens=u["output_tokens_details"]["reasoning_tokens"])
        assert u["total_tokens"] == u["input_tokens"] + u["output_tokens"]
        assert "cached_tokens" in u["input_tokens_details"]
        if doc["status"] == "incomplete":
            assert doc["incomplete_details"] == {"reason": "max_output_tokens"}
        for item in doc["output"]:
            if item["type"] == "reasoning":
                said.reasoning.append((at, item["content"][0]["text"]))
            elif item["type"] == "message":
                assert item["role"] == "assistant"
                said.answer.append((at, item["content"][0]["text"]))
            else:
                assert item["type"] == "function_call" and item["call_id"].startswith("call_")
                said.tool_name = item["name"]
                said.tool.append((at, item["arguments"]))
        return said


class Messages:
    name = "messages"
    path = "/v1/messages"
    headers = ANTHROPIC_VERSION
    finish = {"words": "max_tokens", "tool": "tool_use", "doc": "end_turn"}

    def body(self, prompt: str, max_tokens: int, stream: bool, tools: bool = False,
             choice: str | None = None, schema: dict[str, Any] | None = None,
             after_tool: bool = False) -> dict[str, Any]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
        if after_tool:
            messages += [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1",
                                                   "name": "get_weather",
                                                   "input": {"city": "Oslo"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": "sunny and mild"}]}]
        body: dict[str, Any] = {"model": "m", "messages": messages, "max_tokens": max_tokens,
                                "stream": stream}
        if tools:
            body["tools"] = [{"name": n, "description": "d", "input_schema": p}
                             for n, p in TOOLS]
        if choice is not None:
            body["tool_choice"] = {"type": {"required": "any"}.get(choice, choice)} \
                if choice in ("auto", "required", "none") else {"type": "tool", "name": choice}
        if schema is not None:
            body["output_format"] = {"type": "json_schema", "schema": schema}
        return body

    def streamed(self, events: list[Event]) -> Said:
        said = Said()
        kinds: dict[int, str] = {}
        for e in events:
            assert e.name == e.data["type"]
            d = e.data
            if e.name == "message_start":
                said.rid = d["message"]["id"]
                said.prompt_tokens = d["message"]["usage"]["input_tokens"]
            elif e.name == "content_block_start":
                kinds[d["index"]] = d["content_block"]["type"]
                if d["content_block"]["type"] == "tool_use":
                    said.tool_name = d["content_block"]["name"]
            elif e.name == "content_block_delta":
                delta = d["delta"]
                if delta["type"] == "thinking_delta":
                    said.reasoning.append((e.at, delta["thinking"]))
                elif delta["type"] == "text_delta":
                    said.answer.append((e.at, delta["text"]))
                elif delta["type"] == "input_json_delta":
                    said.tool.append((e.at, delta["partial_json"]))
                else:
                    assert delta["type"] == "signature_delta" and kinds[d["index"]] == "thinking"
            elif e.name == "message_delta":
                said.finish = d["delta"]["stop_reason"]
                said.output_tokens = d["usage"]["output_tokens"]
        assert events[-1].name == "message_stop"
        return said

    def whole(self, doc: dict[str, Any], at: float) -> Said:
        assert doc["type"] == "message" and doc["role"] == "assistant"
        said = Said(finish=doc["stop_reason"], rid=doc["id"],
                    prompt_tokens=doc["usage"]["input_tokens"],
                    output_tokens=doc["usage"]["output_tokens"])
        for block in doc["content"]:
            if block["type"] == "thinking":
                assert block["signature"]
                said.reasoning.append((at, block["thinking"]))
            elif block["type"] == "text":
                said.answer.append((at, block["text"]))
            else:
                assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
                said.tool_name = block["name"]
                args = block["input"]  # an object; a malformed call's, the broken text
                said.tool.append((at, args if isinstance(args, str) else json.dumps(args)))
        return said


Dialect = Chat | Responses | Messages
DIALECTS: list[Dialect] = [Chat(), Responses(), Messages()]
BOTH = [pytest.param(d, s, id=f"{d.name}-{'stream' if s else 'plain'}")
        for d in DIALECTS for s in (True, False)]
EACH = [pytest.param(d, id=d.name) for d in DIALECTS]


# -- helpers --------------------------------------------------------------------------


async def read_sse(live: Live, path: str, body: dict[str, Any],
                   headers: dict[str, str]) -> tuple[float, list[Event]]:
    """POST; return (send time, events) with each event's arrival time."""
    sent = live.now()
    events: list[Event] = []
    async with live.session.post(live.url + path, json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        name = None
        async for raw in r.content:
            line = raw.rstrip(b"\r\n")
            if line.startswith(b"event: "):
                name = line[7:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
                events.append(Event(live.now(), name,
                                    "[DONE]" if data == b"[DONE]" else json.loads(data)))
                name = None
    return sent, events


async def ask(live: Live, d: Dialect, stream: bool, **kw: Any) -> tuple[float, Said]:
    """One request in dialect ``d``; (send time, what it said)."""
    body = d.body(kw.pop("prompt", "please say something"), kw.pop("max_tokens", 8), stream,
                  **kw)
    if stream:
        sent, events = await read_sse(live, d.path, body, d.headers)
        return sent, d.streamed(events)
    sent = live.now()
    async with live.session.post(live.url + d.path, json=body, headers=d.headers) as r:
        assert r.status == 200, await r.text()
        doc = await r.json()
    return sent, d.whole(doc, live.now())


def run(config: dict[str, Any], fn: Callable[[Live], Any]) -> Any:
    async def go() -> Any:
        async with live_sim(**{"ttft_ms": 2, "itl_ms": 1, **config}) as live:
            return await fn(live)
    return run_async(go(), timeout=15)


def invalid(text: str, schema: dict[str, Any]) -> str | None:
    """Why ``text`` is not a document for ``schema`` (None: it is one)."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "json"
    try:
        jsonschema.validate(doc, schema)
    except jsonschema.ValidationError:
        return "schema"
    return None


# -- event sequences --------------------------------------------------------------------


def test_chat_stream_sequence() -> None:
    """2 reasoning and 3 answer chunks (the role on the first), usage, [DONE]."""
    _, events = run({"reasoning_tokens": 2}, lambda live: read_sse(
        live, Chat.path, Chat().body("hi there", 5, True), {}))
    chunks = [e.data for e in events]
    assert chunks[-1] == "[DONE]"
    deltas = [c["choices"][0]["delta"] for c in chunks[:5]]
    assert [sorted(d) for d in deltas] == [["reasoning_content", "role"],
                                           ["reasoning_content"], ["content"], ["content"],
                                           ["content"]]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:5]] == [None] * 4 + ["length"]
    assert chunks[5]["choices"] == [] and chunks[5]["usage"] == {
        "prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7,
        "completion_tokens_details": {"reasoning_tokens": 2}}


def test_responses_stream_sequence() -> None:
    _, events = run({"reasoning_tokens": 2}, lambda live: read_sse(
        live, Responses.path, Responses().body("hi there", 5, True), {}))
    assert [e.name for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.completed"]
    data = [e.data for e in events]
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    created = data[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert created["object"] == "response" and created["id"].startswith("resp_")
    assert data[2]["item"] == {"id": data[3]["item_id"], "type": "reasoning", "summary": []}
    assert data[3]["item_id"].startswith("rs_")
    assert (data[3]["output_index"], data[3]["content_index"]) == (0, 0)
    assert data[7]["item"]["type"] == "message" and data[7]["item"]["status"] == "in_progress"
    assert data[7]["item"]["id"].startswith("msg_") and data[7]["item"]["content"] == []
    assert data[9]["item_id"] == data[7]["item"]["id"] and data[9]["output_index"] == 1
    text = "".join(d["delta"] for d in data[9:12])
    assert data[12]["text"] == text and data[13]["part"]["text"] == text
    done = data[-1]["response"]
    assert done["id"] == created["id"] and done["status"] == "incomplete"
    assert done["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in done["output"]] == ["reasoning", "message"]
    assert done["output"][1]["content"][0] == {"type": "output_text", "text": text,
                                               "annotations": []}
    assert done["usage"] == {"input_tokens": 2, "input_tokens_details": {"cached_tokens": 0},
                             "output_tokens": 5,
                             "output_tokens_details": {"reasoning_tokens": 2},
                             "total_tokens": 7}


def test_messages_stream_sequence() -> None:
    _, events = run({"reasoning_tokens": 2}, lambda live: read_sse(
        live, Messages.path, Messages().body("hi there", 5, True), ANTHROPIC_VERSION))
    assert [e.name for e in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_delta", "content_block_stop", "content_block_start",
        "content_block_delta", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    data = [e.data for e in events]
    message = data[0]["message"]
    assert message["id"].startswith("msg_") and message["content"] == []
    assert (message["stop_reason"], message["stop_sequence"]) == (None, None)
    assert message["usage"]["input_tokens"] == 2 and message["usage"]["output_tokens"] == 1
    assert data[1] == {"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": ""}}
    assert [d["delta"]["type"] for d in data[2:5]] == ["thinking_delta", "thinking_delta",
                                                      "signature_delta"]
    assert data[5] == {"type": "content_block_stop", "index": 0}
    assert data[6] == {"type": "content_block_start", "index": 1,
                       "content_block": {"type": "text", "text": ""}}
    assert all(d["index"] == 1 and d["delta"]["type"] == "text_delta" for d in data[7:10])
    assert data[10] == {"type": "content_block_stop", "index": 1}
    assert data[11] == {"type": "message_delta",
                        "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
                        "usage": {"output_tokens": 5}}
    assert data[12] == {"type": "message_stop"}


@pytest.mark.parametrize("d", EACH)
def test_plain_answers_are_whole(d: Dialect) -> None:
    """Not streamed: one JSON body with the reasoning and the answer."""
    _, said = run({"reasoning_tokens": 2}, lambda live: ask(live, d, False, prompt="hi there",
                                                            max_tokens=5))
    assert len(said.thought.split()) == 2 and len(said.text.split()) == 3
    assert said.prompt_tokens == 2 and said.output_tokens == 5
    assert said.reasoning_tokens in (2, None) and said.finish == d.finish["words"]
    assert said.tool_name is None


# -- reasoning, counted and timed -------------------------------------------------------

TTFT, ITL = 20.0, 4.0


@pytest.mark.timing
@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_reasoning_then_answer(d: Dialect, stream: bool) -> None:
    """20 reasoning tokens, then 10 of answer: the first no sooner than TTFT,
    the answer 20 steps after it (what this machine adds to both cancels);
    usage counts both."""
    sent, said = run({"ttft_ms": TTFT, "itl_ms": ITL, "reasoning_tokens": 20},
                     lambda live: ask(live, d, stream, max_tokens=30))
    assert said.output_tokens == 30 and said.reasoning_tokens in (20, None)
    assert said.finish == d.finish["words"]
    if not stream:
        assert len(said.thought.split()) == 20 and len(said.text.split()) == 10
        latency = 1000 * (said.answer[0][0] - sent)
        assert latency >= TTFT + 29 * ITL - 0.5, latency
        return
    assert len(said.reasoning) == 20 and len(said.answer) == 10
    assert all(len(t.split()) == 1 for _, t in said.reasoning + said.answer)
    first, answer = said.reasoning[0][0], said.answer[0][0]
    ttft = 1000 * (first - sent)
    thinking = 1000 * (answer - first)
    print(f"{d.name}: ttft {ttft:.2f} ms, reasoning {thinking:.2f} ms")
    assert ttft >= TTFT - 0.5, ttft
    assert abs(thinking - 20 * ITL) <= 4, thinking
    assert said.reasoning[-1][0] < answer


def test_reasoning_lengths_vary_per_request_when_asked() -> None:
    """reasoning_sigma: lognormal lengths around the median, seeded, bounded."""
    async def lengths(live: Live) -> list[int]:
        out = []
        for max_tokens in [400] * 30 + [10] * 5:
            _, said = await ask(live, Chat(), False, max_tokens=max_tokens)
            assert said.reasoning_tokens is not None
            out.append(said.reasoning_tokens)
        return out

    config = {"ttft_ms": 0, "itl_ms": 0, "reasoning_tokens": 40, "reasoning_sigma": 0.5}
    first, again = run(config, lengths), run(config, lengths)
    assert first == again  # seeded
    spread = sorted(first[:30])
    assert len(set(spread)) > 10 and 25 <= spread[15] <= 60, spread
    assert all(n <= 10 for n in first[30:])
    assert run({**config, "reasoning_sigma": 0}, lengths)[:30] == [40] * 30


# -- tool calls --------------------------------------------------------------------------


@pytest.mark.parametrize("answer_tokens", [40, 12])
@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_tool_call_arguments_are_valid(d: Dialect, stream: bool, answer_tokens: int) -> None:
    """One fragment per answer token (after the reasoning), which assemble
    into arguments valid against the first tool's schema; 40 tokens pad the
    document with whitespace, 12 put several characters in a fragment."""
    _, said = run({"reasoning_tokens": 3}, lambda live: ask(
        live, d, stream, max_tokens=3 + answer_tokens, tools=True))
    assert said.tool_name == "get_weather" and said.finish == d.finish["tool"]
    assert said.text == "" and said.output_tokens == 3 + answer_tokens
    assert len(said.thought.split()) == 3
    if stream:
        assert len(said.tool) == answer_tokens and all(t for _, t in said.tool)
    assert invalid(said.arguments, WEATHER) is None, said.arguments


@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_malformed_tool_calls_are_not_json(d: Dialect, stream: bool) -> None:
    async def go(live: Live) -> list[Said]:
        return [(await ask(live, d, stream, max_tokens=n, tools=True))[1] for n in (40, 10)]

    for said in run({"malformed_tool_share": 1.0}, go):
        assert said.tool_name == "get_weather"
        assert invalid(said.arguments, WEATHER) == "json", said.arguments


@pytest.mark.parametrize("d", EACH)
def test_tool_choice(d: Dialect) -> None:
    """auto calls a share of the time (here none), required and named always
    call, none never; a tool result last always gets text."""
    async def go(live: Live) -> dict[str, Said]:
        out = {}
        cases: list[tuple[str, dict[str, Any]]] = [
            ("auto", {}), ("required", {"choice": "required"}),
            ("named", {"choice": "get_time"}), ("none", {"choice": "none"}),
            ("after_tool", {"choice": "required", "after_tool": True})]
        for label, kw in cases:
            out[label] = (await ask(live, d, False, tools=True, **kw))[1]
        return out

    said = run({"tool_call_share": 0.0}, go)
    assert said["auto"].tool_name is None and len(said["auto"].text.split()) == 8
    assert said["required"].tool_name == "get_weather"
    assert said["named"].tool_name == "get_time"
    assert invalid(said["named"].arguments, CLOCK) is None
    assert said["none"].tool_name is None and said["none"].text
    after = said["after_tool"]
    assert after.tool_name is None and len(after.text.split()) == 8
    assert after.finish == d.finish["words"]


@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_a_tool_result_last_gets_text(d: Dialect, stream: bool) -> None:
    _, said = run({}, lambda live: ask(live, d, stream, tools=True, after_tool=True))
    assert said.tool_name is None and said.tool == []
    assert len(said.text.split()) == 8 and said.finish == d.finish["words"]
    # the earlier call's arguments and its result count as prompt
    assert said.prompt_tokens >= 3 + 2 + 3


def test_tool_call_share_is_a_seeded_bernoulli() -> None:
    async def go(live: Live) -> list[bool]:
        return [(await ask(live, Chat(), False, tools=True, max_tokens=2))[1].tool_name
                is not None for _ in range(40)]

    first = run({"tool_call_share": 0.5, "seed": 7}, go)
    assert first == run({"tool_call_share": 0.5, "seed": 7}, go)
    assert 8 <= sum(first) <= 32


# -- structured output -------------------------------------------------------------------


@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_structured_output_is_valid(d: Dialect, stream: bool) -> None:
    async def go(live: Live) -> list[Said]:
        return [(await ask(live, d, stream, max_tokens=n, schema=REPORT))[1]
                for n in (60, 8)]

    for said, n in zip(run({}, go), (60, 8)):
        assert said.tool_name is None and said.finish == d.finish["doc"]
        assert invalid(said.text, REPORT) is None, said.text
        if stream:
            assert len(said.answer) == n


@pytest.mark.parametrize(("d", "stream"), BOTH)
def test_invalid_json_share_is_never_valid(d: Dialect, stream: bool) -> None:
    """Alternately cut (not JSON) and missing a required property (JSON, not
    valid against the schema)."""
    async def go(live: Live) -> list[Said]:
        return [(await ask(live, d, stream, max_tokens=40, schema=REPORT))[1]
                for _ in range(4)]

    why = [invalid(said.text, REPORT) for said in run({"invalid_json_share": 1.0}, go)]
    assert why == ["json", "schema", "json", "schema"]


def test_chat_json_object_mode_answers_an_object() -> None:
    async def go(live: Live) -> Said:
        body = Chat().body("hi", 10, False)
        body["response_format"] = {"type": "json_object"}
        async with live.session.post(live.url + Chat.path, json=body) as r:
            return Chat().whole(await r.json(), 0.0)

    said = run({}, go)
    assert isinstance(json.loads(said.text), dict) and said.finish == "stop"


# -- previous_response_id ----------------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
def test_previous_response_id_adds_the_earlier_tokens(stream: bool) -> None:
    d = Responses()

    async def go(live: Live) -> list[Said]:
        _, one = await ask(live, d, stream, prompt="a b c", max_tokens=5)
        body = d.body("d e", 4, stream)
        body["previous_response_id"] = one.rid
        if stream:
            _, events = await read_sse(live, d.path, body, {})
            two = d.streamed(events)
        else:
            async with live.session.post(live.url + d.path, json=body) as r:
                two = d.whole(await r.json(), 0.0)
        body = d.body("f", 2, False)
        body["previous_response_id"] = two.rid
        async with live.session.post(live.url + d.path, json=body) as r:
            three = d.whole(await r.json(), 0.0)
        return [one, two, three]

    one, two, three = run({}, go)
    assert one.prompt_tokens == 3
    assert two.prompt_tokens == 2 + 3 + 5
    assert three.prompt_tokens == 1 + 10 + 4


def test_an_unknown_previous_response_is_404() -> None:
    """Never made, or made with store: false."""
    async def go(live: Live) -> list[tuple[int, Any]]:
        async with live.session.post(live.url + Responses.path, json={
                **Responses().body("hi", 4, False), "store": False}) as r:
            unstored = (await r.json())["id"]
        out = []
        for rid in ("resp_nope", unstored):
            body = {**Responses().body("hi", 4, False), "previous_response_id": rid}
            async with live.session.post(live.url + Responses.path, json=body) as r:
                out.append((r.status, await r.json()))
        return out

    nope, unstored = run({}, go)
    assert nope == (404, {"error": {
        "message": "Previous response with id 'resp_nope' not found.",
        "type": "invalid_request_error", "param": "previous_response_id",
        "code": "previous_response_not_found"}})
    assert unstored[0] == 404


def test_the_response_store_is_a_bounded_lru() -> None:
    store = ResponseStore(capacity=2)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # used: b is now the oldest
    store.put("c", 3)
    assert (store.get("a"), store.get("b"), store.get("c"), len(store)) == (1, None, 3, 2)


# -- errors: the API key, Anthropic's required parts, mid-stream failures -------------------

OPENAI_401 = {"error": {"message": "Incorrect API key provided.",
                        "type": "invalid_request_error", "param": None,
                        "code": "invalid_api_key"}}
ANTHROPIC_401 = {"type": "error", "error": {"type": "authentication_error",
                                            "message": "invalid x-api-key"}}


def test_api_key() -> None:
    key = "sk-sim-123"

    async def go(live: Live) -> list[tuple[str, int, Any]]:
        out = []
        cases: list[tuple[str, str, str, dict[str, Any] | None, dict[str, str]]] = [
            ("chat none", "POST", Chat.path, Chat().body("hi", 2, False), {}),
            ("chat wrong", "POST", Chat.path, Chat().body("hi", 2, False),
             {"Authorization": "Bearer nope"}),
            ("completions", "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2}, {}),
            ("embeddings", "POST", "/v1/embeddings", {"input": "hi"}, {}),
            ("models", "GET", "/v1/models", None, {}),
            ("responses", "POST", Responses.path, Responses().body("hi", 2, False), {}),
            ("messages none", "POST", Messages.path, Messages().body("hi", 2, False),
             ANTHROPIC_VERSION),
            ("messages wrong", "POST", Messages.path, Messages().body("hi", 2, False),
             {**ANTHROPIC_VERSION, "x-api-key": "nope"}),
            ("chat ok", "POST", Chat.path, Chat().body("hi", 2, False),
             {"Authorization": f"Bearer {key}"}),
            ("completions ok", "POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2},
             {"Authorization": f"Bearer {key}"}),
            ("models ok", "GET", "/v1/models", None, {"Authorization": f"Bearer {key}"}),
            ("embeddings ok", "POST", "/v1/embeddings", {"input": "hi"},
             {"Authorization": f"Bearer {key}"}),
            ("responses ok", "POST", Responses.path, Responses().body("hi", 2, False),
             {"Authorization": f"Bearer {key}"}),
            ("messages ok", "POST", Messages.path, Messages().body("hi", 2, False),
             {**ANTHROPIC_VERSION, "x-api-key": key}),
            ("messages bearer", "POST", Messages.path, Messages().body("hi", 2, False),
             {**ANTHROPIC_VERSION, "Authorization": f"Bearer {key}"}),
            ("health", "GET", "/health", None, {}),
            ("metrics", "GET", "/metrics", None, {}),
        ]
        for label, method, path, body, headers in cases:
            async with live.session.request(method, live.url + path, json=body,
                                            headers=headers) as r:
                raw = await r.read()
                out.append((label, r.status, json.loads(raw) if r.status == 401 else None))
        return out

    got = {label: (status, doc) for label, status, doc in run({"api_key": key}, go)}
    for label in ("chat none", "chat wrong", "completions", "embeddings", "models",
                  "responses"):
        assert got[label] == (401, OPENAI_401), label
    for label in ("messages none", "messages wrong"):
        assert got[label] == (401, ANTHROPIC_401), label
    for label in ("chat ok", "completions ok", "models ok", "embeddings ok", "responses ok",
                  "messages ok", "messages bearer", "health", "metrics"):
        assert got[label][0] == 200, label


def test_config_takes_an_empty_api_key_and_bounded_shares() -> None:
    assert SimConfig(api_key="").api_key == ""
    assert SimConfig.from_mapping({"api_key": "k", "tool_call_share": 0.25}).api_key == "k"
    for bad in ({"tool_call_share": 1.5}, {"malformed_tool_share": -0.1},
                {"invalid_json_share": 2}, {"reasoning_sigma": -1}, {"api_key": 3}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimConfig.from_mapping(bad)


def test_anthropic_wants_its_version_header_and_max_tokens() -> None:
    async def go(live: Live) -> list[tuple[int, Any]]:
        out = []
        body = Messages().body("hi", 4, False)
        no_max = {k: v for k, v in body.items() if k != "max_tokens"}
        for b, headers in [(body, {}), (no_max, ANTHROPIC_VERSION),
                           ({**body, "messages": []}, ANTHROPIC_VERSION)]:
            async with live.session.post(live.url + Messages.path, json=b,
                                         headers=headers) as r:
                out.append((r.status, await r.json()))
        return out

    for status, doc in run({}, go):
        assert status == 400 and doc["type"] == "error"
        assert doc["error"]["type"] == "invalid_request_error" and doc["error"]["message"]


def test_injected_errors_are_in_each_dialects_shape() -> None:
    """An injected 529: OpenAI's error object, Anthropic's overloaded_error."""
    async def go(live: Live) -> list[tuple[int, Any]]:
        out = []
        for d in DIALECTS:
            async with live.session.post(live.url + d.path, json=d.body("hi", 2, False),
                                         headers=d.headers) as r:
                out.append((r.status, await r.json()))
        return out

    chat, responses, messages = run({"faults": [{"kind": "error", "rate": 1.0,
                                                 "status": 529}]}, go)
    assert chat[0] == responses[0] == messages[0] == 529
    assert chat[1]["error"]["type"] == responses[1]["error"]["type"] == "server_error"
    assert messages[1] == {"type": "error", "error": {
        "type": "overloaded_error", "message": messages[1]["error"]["message"]}}


def test_quirks_in_the_new_dialects() -> None:
    """error_in_stream: the dialect's error event, then nothing; ping_comments:
    Anthropic's ping events."""
    faults = [{"kind": "error_in_stream", "rate": 1.0, "after_tokens": 2}]

    async def go(live: Live) -> tuple[list[Event], list[Event]]:
        _, r = await read_sse(live, Responses.path, Responses().body("hi", 6, True), {})
        _, m = await read_sse(live, Messages.path, Messages().body("hi", 6, True),
                              ANTHROPIC_VERSION)
        return r, m

    responses, messages = run({"faults": faults}, go)
    assert [e.name for e in responses][-3:] == ["response.output_text.delta"] * 2 + ["error"]
    error = responses[-1].data
    assert error == {"type": "error", "sequence_number": len(responses) - 1,
                     "code": "server_error", "message": error["message"], "param": None}
    assert messages[-1].name == "error"
    assert messages[-1].data["error"]["type"] == "overloaded_error"
    assert sum(e.name == "content_block_delta" for e in messages) == 2

    async def pinged(live: Live) -> list[Event]:
        return (await read_sse(live, Messages.path, Messages().body("hi", 3, True),
                               ANTHROPIC_VERSION))[1]

    events = run({"faults": [{"kind": "ping_comments"}]}, pinged)
    names = [e.name for e in events]
    assert names.count("ping") >= 3 and events[names.index("ping")].data == {"type": "ping"}
    assert Messages().streamed([e for e in events if e.name != "ping"]).output_tokens == 3


# -- the serving model applies to every dialect ----------------------------------------------


@pytest.mark.parametrize("d", EACH)
def test_merged_events_keep_reasoning_and_answer_apart(d: Dialect) -> None:
    """stream_interval 4: fewer events, never mixing reasoning and answer, and
    the call's fragments still assemble into valid arguments."""
    _, said = run({"reasoning_tokens": 6, "stream_interval": 4},
                  lambda live: ask(live, d, True, max_tokens=30, tools=True))
    assert [len(t.split()) for _, t in said.reasoning] == [1, 4, 1]
    assert len(said.tool) == 7  # 24 tokens: the first alone, then 4 a time, the last
    assert invalid(said.arguments, WEATHER) is None


def test_prefix_cache_and_metrics_count_the_new_dialects() -> None:
    prompt = " ".join(f"w{i}" for i in range(44))  # 5 blocks of 8, and 4 more

    async def go(live: Live) -> tuple[list[Any], dict[str, float]]:
        out = []
        for d in (Responses(), Messages()):
            for _ in range(2):
                async with live.session.post(live.url + d.path, headers=d.headers,
                                             json=d.body(prompt, 5, False)) as r:
                    out.append((await r.json())["usage"])
        return out, await live.metrics()

    usages, metrics = run({"prefix_cache_blocks": 64, "block_tokens": 8}, go)
    r1, r2, m1, m2 = usages
    assert r1["input_tokens_details"]["cached_tokens"] == 0
    assert r2["input_tokens_details"]["cached_tokens"] == 40 and r2["input_tokens"] == 44
    # Anthropic's input_tokens are the uncached ones; cache reads apart
    assert m1["cache_read_input_tokens"] == 40 and m1["input_tokens"] == 4
    assert m2 == m1
    assert metrics['vllm:generation_tokens_total{model_name="loadkit-sim"}'] == 4 * 5
    assert metrics['vllm:prompt_tokens_total{model_name="loadkit-sim"}'] == 4 * 44
    assert metrics["loadkit_sim_requests_total"] == 4


QUIRKS: list[dict[str, Any]] = [{"kind": "no_done"}, {"kind": "no_stream_usage"}, {"kind": "role_event"},
          {"kind": "merge_tokens", "tokens": 3}, {"kind": "cut_stream", "rate": 1.0},
          {"kind": "malformed", "rate": 1.0}, {"kind": "reset", "rate": 1.0},
          {"kind": "version_b", "wrong_content": True}]


@pytest.mark.parametrize("fault", QUIRKS, ids=[f["kind"] for f in QUIRKS])
def test_every_quirk_and_fault_serves_every_dialect(fault: dict[str, Any],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """No handler fails, whatever the fault does to the answer."""
    async def go(live: Live) -> list[int]:
        statuses = []
        for d in DIALECTS:
            for stream in (True, False):
                body = d.body("hi", 9, stream, tools=True)
                try:
                    async with live.session.post(live.url + d.path, json=body,
                                                 headers=d.headers) as r:
                        await r.read()
                        statuses.append(r.status)
                except aiohttp.ClientError:  # a cut connection
                    statuses.append(0)
        return statuses

    with caplog.at_level("ERROR"):
        statuses = run({"reasoning_tokens": 2, "faults": [fault]}, go)
    assert set(statuses) <= {0, 200} and not caplog.records, caplog.records
