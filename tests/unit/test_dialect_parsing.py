"""The dialects' request shapes and parsers, byte by byte: OpenAI chat (tool
calls), the Responses API and Anthropic Messages; tool calls assembled from
fragments and judged; structured output checked against its schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadkit.engine.adapter import IncompleteAnswer, ParsedResponse, ProtocolError, ToolCall
from loadkit.protocols import anthropic, embeddings, generation, openai, responses
from loadkit.protocols.registry import identity
from loadkit.workload.models import Tenant
from loadkit.workload.scenarios import EmbeddingsScenario, GenerationScenario

WEATHER = {"name": "get_weather", "description": "weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def sse(*events: dict, named: bool = True) -> bytes:
    return b"".join((f"event: {e['type']}\n".encode() if named else b"")
                    + b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def feed_all(parser: Any, raw: bytes, step: int = 7) -> tuple[int, ParsedResponse]:
    """Fed in small pieces, as a socket delivers them."""
    n = sum(parser.feed(raw[i:i + step]) for i in range(0, len(raw), step))
    return n, parser.finish()


def scenario(kind: str, **kw: Any) -> GenerationScenario:
    return GenerationScenario.model_validate({"name": "s", "kind": kind, "model": "m", **kw})


# -- Responses API ------------------------------------------------------------------

def responses_stream(reasoning: int, answer: int, call: str | None = None,
                     status: str = "completed") -> bytes:
    events: list[dict] = [{"type": "response.created",
                           "response": {"id": "resp_1", "status": "in_progress"}}]
    events += [{"type": "response.reasoning_text.delta", "item_id": "rs", "delta": " think"}
               for _ in range(reasoning)]
    events += [{"type": "response.output_text.delta", "item_id": "msg", "delta": " word"}
               for _ in range(answer)]
    if call is not None:
        events.append({"type": "response.output_item.added", "item": {
            "id": "fc_1", "type": "function_call", "call_id": "call_9", "name": "get_weather",
            "arguments": ""}})
        events += [{"type": "response.function_call_arguments.delta", "item_id": "fc_1",
                    "delta": call[i:i + 3]} for i in range(0, len(call), 3)]
    done: dict = {"id": "resp_1", "status": status,
                  "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4},
                            "output_tokens": reasoning + answer,
                            "output_tokens_details": {"reasoning_tokens": reasoning}}}
    if status == "incomplete":
        done["incomplete_details"] = {"reason": "max_output_tokens"}
    events.append({"type": f"response.{status}", "response": done})
    return sse(*events)


def test_a_responses_stream_classes_reasoning_and_answer_events() -> None:
    n, p = feed_all(responses.ResponsesStream(keep_text=True), responses_stream(5, 3))
    assert n == 8 and p.answer_event == 5 and p.reasoning_tokens == 5
    assert (p.output_tokens, p.token_source, p.text) == (8, "usage", " word word word")
    assert (p.prompt_tokens, p.cached_tokens, p.response_id) == (12, 4, "resp_1")
    assert p.finish_reason == "stop" and not p.no_done
    assert p.first_share == pytest.approx(6 / 45)  # " think" of 5 x " think", 3 x " word"


def test_a_responses_stream_cut_at_the_limit_says_length() -> None:
    _, p = feed_all(responses.ResponsesStream(), responses_stream(0, 4, status="incomplete"))
    assert p.finish_reason == "length" and p.output_tokens == 4


def test_a_responses_tool_call_is_assembled_from_its_fragments() -> None:
    args = '{"city": "Paris"}'
    n, p = feed_all(responses.ResponsesStream(), responses_stream(0, 0, call=args))
    assert p.tool_calls == (ToolCall("call_9", "get_weather", args),)
    assert p.finish_reason == "tool_calls" and p.tool_event == n - 1 and p.answer_event is None
    assert n == 1 + 6  # the call's opening, as chat's first tool chunk, then 6 fragments


def test_a_responses_call_said_whole_is_output_from_its_opening() -> None:
    """Arguments only in `arguments.done`, or the call only in the completed
    response: whole answers whose first token event is the call (they were
    `incomplete`, and TTFT waited for the first fragment: an audit)."""
    opened = {"type": "response.output_item.added", "item": {
        "id": "fc", "type": "function_call", "call_id": "c", "name": "f", "arguments": ""}}
    whole = sse(opened, {"type": "response.function_call_arguments.done", "item_id": "fc",
                         "arguments": '{"a": 1}'},
                {"type": "response.completed", "response": {"status": "completed"}})
    n, p = feed_all(responses.ResponsesStream(), whole)
    assert n == 1 and p.tool_event == 0 and p.tool_calls == (ToolCall("c", "f", '{"a": 1}'),)
    at_end = sse({"type": "response.completed", "response": {"status": "completed", "output": [
        {"type": "function_call", "id": "fc", "call_id": "c2", "name": "g", "arguments": "{}"}]}})
    n, p = feed_all(responses.ResponsesStream(), at_end)
    assert n == 1 and p.tool_calls == (ToolCall("c2", "g", "{}"),)


def test_a_responses_stream_without_its_end_or_with_an_error_is_not_an_answer() -> None:
    raw = responses_stream(0, 3)
    with pytest.raises(IncompleteAnswer, match=r"response\.completed"):
        feed_all(responses.ResponsesStream(), raw[:raw.rindex(b"event:")])
    with pytest.raises(ProtocolError, match="rate limited"):
        feed_all(responses.ResponsesStream(), sse({"type": "error", "message": "rate limited"}))
    with pytest.raises(IncompleteAnswer, match="no output token"):
        feed_all(responses.ResponsesStream(), responses_stream(0, 0))


def test_a_whole_responses_answer() -> None:
    doc = {"id": "resp_2", "status": "completed", "output": [
        {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hmm"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "hello"}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city": "Oslo"}'}],
        "usage": {"input_tokens": 3, "output_tokens": 9,
                  "output_tokens_details": {"reasoning_tokens": 4}}}
    p = responses.parse_body(json.dumps(doc).encode())
    assert (p.text, p.output_tokens, p.reasoning_tokens, p.response_id) == \
        ("hello", 9, 4, "resp_2")
    assert p.tool_calls == (ToolCall("c1", "get_weather", '{"city": "Oslo"}'),)
    with pytest.raises(IncompleteAnswer):
        responses.parse_body(b'{"status": "completed", "output": []}')
    with pytest.raises(ProtocolError, match="error in answer: x"):
        responses.parse_body(b'{"status": "failed", "output": [], "error": {"message": "x"}}')


# -- Anthropic Messages -------------------------------------------------------------

def anthropic_stream(thinking: int, answer: int, call: str | None = None,
                     stop: str = "max_tokens", end: bool = True) -> bytes:
    events: list[dict] = [{"type": "message_start", "message": {
        "id": "msg_1", "usage": {"input_tokens": 10, "cache_read_input_tokens": 6,
                                 "output_tokens": 1}}}, {"type": "ping"}]
    if thinking:
        events.append({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "thinking", "thinking": ""}})
        events += [{"type": "content_block_delta", "index": 0,
                    "delta": {"type": "thinking_delta", "thinking": " hmm"}}] * thinking
        events += [{"type": "content_block_delta", "index": 0,
                    "delta": {"type": "signature_delta", "signature": "abc"}},
                   {"type": "content_block_stop", "index": 0}]
    events += [{"type": "content_block_delta", "index": 1,
                "delta": {"type": "text_delta", "text": " yes"}}] * answer
    if call is not None:
        events.append({"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}})
        events += [{"type": "content_block_delta", "index": 2,
                    "delta": {"type": "input_json_delta", "partial_json": call[i:i + 4]}}
                   for i in range(0, len(call), 4)]
    events.append({"type": "message_delta", "delta": {"stop_reason": stop},
                   "usage": {"output_tokens": thinking + answer}})
    if end:
        events.append({"type": "message_stop"})
    return sse(*events)


def test_an_anthropic_stream_counts_thinking_from_its_events() -> None:
    n, p = feed_all(anthropic.AnthropicStream(keep_text=True), anthropic_stream(6, 2))
    assert n == 8 and p.answer_event == 6 and p.reasoning_tokens == 6  # no usage split
    assert (p.output_tokens, p.text, p.finish_reason) == (8, " yes yes", "length")
    assert p.first_share == pytest.approx(1 / 8)  # " hmm" of 8 four-character events
    assert (p.prompt_tokens, p.cached_tokens, p.response_id) == (16, 6, "msg_1")


def test_an_anthropic_tool_use_block_is_a_call() -> None:
    args = '{"city": "Rome"}'
    n, p = feed_all(anthropic.AnthropicStream(), anthropic_stream(0, 1, args, "tool_use"))
    assert p.tool_calls == (ToolCall("toolu_1", "get_weather", args),)
    assert p.finish_reason == "tool_calls" and p.tool_event == n - 1


def test_an_anthropic_stream_without_message_stop_or_with_an_error() -> None:
    _, p = feed_all(anthropic.AnthropicStream(), anthropic_stream(0, 2, end=False))
    assert p.no_done and p.finish_reason == "length"  # it said why it stopped
    with pytest.raises(ProtocolError, match="Overloaded"):
        feed_all(anthropic.AnthropicStream(), sse(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    cut = anthropic_stream(0, 2)
    with pytest.raises(IncompleteAnswer):
        feed_all(anthropic.AnthropicStream(), cut[:cut.index(b"event: message_delta")])


def test_a_whole_anthropic_answer() -> None:
    doc = {"id": "msg_2", "type": "message", "stop_reason": "tool_use", "content": [
        {"type": "thinking", "thinking": "so", "signature": "s"},
        {"type": "text", "text": "let me look"},
        {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Nice"}}],
        "usage": {"input_tokens": 5, "output_tokens": 7}}
    p = anthropic.parse_body(json.dumps(doc).encode())
    assert (p.text, p.output_tokens, p.finish_reason) == ("let me look", 7, "tool_calls")
    assert p.tool_calls[0].name == "get_weather" and \
        json.loads(p.tool_calls[0].arguments) == {"city": "Nice"}
    with pytest.raises(ProtocolError, match="error in answer: no"):
        anthropic.parse_body(b'{"type": "error", "error": {"message": "no"}}')


# -- OpenAI chat tool calls -----------------------------------------------------------

def test_openai_chat_tool_call_deltas_are_assembled() -> None:
    head = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "get_weather", "arguments": ""}}]}, "finish_reason": None}]}
    parts = ['{"ci', 'ty": ', '"Lima"}']
    chunks = [head] + [{"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "function": {"arguments": a}}]}, "finish_reason": None}]} for a in parts]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    raw = sse(*chunks, named=False) + b"data: [DONE]\n\n"
    n, p = feed_all(openai.OpenAIStream(), raw)
    assert p.tool_calls == (ToolCall("call_1", "get_weather", '{"city": "Lima"}'),)
    assert p.finish_reason == "tool_calls" and p.tool_event == n - 1
    assert p.reasoning_tokens is None  # a call's fragments are not reasoning
    bad = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": [0], "function": {"name": "f"}}]}}]}
    with pytest.raises(ProtocolError, match=r"a tool call's index is not a number: '\[0\]'"):
        feed_all(openai.OpenAIStream(), sse(bad, named=False))


def test_a_chat_refusal_is_the_model_s_answer() -> None:
    """`delta.refusal` / `message.refusal`: an answer, as Responses' refusal
    deltas are (chat counted them as `incomplete` failures: an audit)."""
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"refusal": w}, "finish_reason": None}]}
        for w in ("I ", "can't ", "help.")]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    n, p = feed_all(openai.OpenAIStream(keep_text=True),
                    sse(*chunks, named=False) + b"data: [DONE]\n\n")
    assert n == 3 and p.answer_event == 0 and p.text == "I can't help."
    whole = openai.parse_body(json.dumps({"choices": [{"message": {
        "role": "assistant", "content": None, "refusal": "No."}, "finish_reason": "stop"}],
        "usage": {"completion_tokens": 2}}).encode())
    assert whole.text == "No." and whole.output_tokens == 2


# -- requests -----------------------------------------------------------------------

def build(s: GenerationScenario) -> dict:
    body, _ = generation.prepare(s, {}, "seed").build_body(5, 20, 7)
    assert body is not None
    return json.loads(body)


def test_each_dialect_puts_limit_messages_tools_and_format_where_it_belongs() -> None:
    common = {"tools": [WEATHER], "tool_choice": {"name": "get_weather"},
              "response_format": {"schema": {"type": "object"}}}
    chat = build(scenario("openai-chat", **common))
    assert chat["max_tokens"] == 20 and chat["messages"][0]["role"] == "user"
    assert chat["tools"][0]["function"]["name"] == "get_weather"
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert chat["stream_options"] == {"include_usage": True}
    resp = build(scenario("openai-responses", **common))
    assert resp["max_output_tokens"] == 20 and resp["input"][0]["content"].startswith("7: ")
    assert resp["tools"][0]["parameters"] == WEATHER["parameters"]
    assert resp["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert resp["text"]["format"]["type"] == "json_schema" and "stream_options" not in resp
    msgs = build(scenario("anthropic-messages", **{**common, "tool_choice": "required"}))
    assert msgs["max_tokens"] == 20 and msgs["tools"][0]["input_schema"]["required"] == ["city"]
    assert msgs["tool_choice"] == {"type": "any"} and msgs["output_format"]["type"] == "json_schema"
    assert msgs["messages"][0]["content"].split()[0] == "7:"  # the request's number
    assert len(msgs["messages"][0]["content"].split()) == 5  # then four words: five in all


def test_anthropic_requests_carry_version_and_key_headers() -> None:
    tenant = Tenant(name="t", api_key="sk-1")
    headers = identity(scenario("anthropic-messages"), tenant, {})
    assert headers["x-api-key"] == "sk-1" and headers["anthropic-version"] == "2023-06-01"
    assert "Authorization" not in headers
    assert identity(scenario("openai-responses"), tenant, {})["Authorization"] == "Bearer sk-1"


def session_turns(kind: str, **kw: Any) -> list[dict]:
    """Two requests of a session whose first answer called a tool."""
    req = generation.prepare(scenario(kind, tools=[WEATHER], tool_result="sunny",
                                      session={"turns": 2}, **kw), {}, "seed")
    assert req.build_turn is not None and req.next_history is not None
    state: dict = {}
    first, _, sent, _ = req.build_turn([], 4, 10, 1, state)
    called = ParsedResponse(3, text=None, tool_calls=(
        ToolCall("call_7", "get_weather", '{"city": "Bern"}'),), response_id="resp_7")
    history = req.next_history(sent, called, state)
    second, _, _, _ = req.build_turn(history, 4, 10, 2, state)
    return [json.loads(first), json.loads(second)]


def test_a_tool_result_turn_reads_in_each_dialect_s_own_shape() -> None:
    _, chat = session_turns("openai-chat")
    assert chat["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Bern"}'
    assert chat["messages"][2] == {"role": "tool", "tool_call_id": "call_7", "content": "sunny"}
    _, resp = session_turns("openai-responses")
    assert resp["input"][1] == {"type": "function_call", "call_id": "call_7",
                                "name": "get_weather", "arguments": '{"city": "Bern"}'}
    assert resp["input"][2] == {"type": "function_call_output", "call_id": "call_7",
                                "output": "sunny"}
    _, msgs = session_turns("anthropic-messages")
    assert msgs["messages"][1] == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_7", "name": "get_weather", "input": {"city": "Bern"}}]}
    assert msgs["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "call_7", "content": "sunny"}]}


def test_previous_response_id_sends_only_what_is_new() -> None:
    first, second = session_turns("openai-responses", previous_response_id=True)
    assert "previous_response_id" not in first
    assert second["previous_response_id"] == "resp_7"
    assert second["input"] == [{"type": "function_call_output", "call_id": "call_7",
                                "output": "sunny"}]


def test_an_anthropic_session_s_system_prefix_is_top_level() -> None:
    first, _ = session_turns("anthropic-messages", prefix={"count": 1, "tokens": 3})
    assert len(first["system"].split()) == 3
    assert [m["role"] for m in first["messages"]] == ["user"]


# -- checks -------------------------------------------------------------------------

def check_of(**kw: Any) -> Any:
    check = generation.prepare(scenario("openai-chat", **kw), {}, "seed").check
    assert check is not None
    return lambda p: check(200, p)


def test_malformed_or_undeclared_tool_calls_fail_their_check() -> None:
    check = check_of(tools=[WEATHER])
    call = lambda name, args: ParsedResponse(1, tool_calls=(ToolCall("c", name, args),))  # noqa: E731
    assert check(call("get_weather", '{"city": "Oslo"}')) is None
    assert "not JSON" in check(call("get_weather", '{"city": "Os'))
    assert "not a declared tool" in check(call("rm_rf", "{}"))
    assert "do not match" in check(call("get_weather", '{"town": 3}'))
    assert check(ParsedResponse(1, text="plain answer")) is None


def test_structured_output_is_checked_against_its_schema() -> None:
    check = check_of(response_format={"name": "w", "schema": {
        "type": "object", "properties": {"t": {"type": "number"}}, "required": ["t"]}})
    assert check(ParsedResponse(1, text='  {"t": 21.5}  ')) is None
    assert "not JSON" in check(ParsedResponse(1, text='{"t": 2'))
    assert "does not match schema w" in check(ParsedResponse(1, text='{"t": "warm"}'))


def test_bad_schemas_and_tool_choices_are_input_errors() -> None:
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        scenario("openai-chat", tools=[{**WEATHER, "parameters": {"type": "objekt"}}])
    with pytest.raises(ValueError, match="not among `tools`"):
        scenario("openai-chat", tools=[WEATHER], tool_choice={"name": "other"})
    with pytest.raises(ValueError, match="previous_response_id"):
        scenario("openai-chat", previous_response_id=True)
    with pytest.raises(ValueError, match="chat dialect"):
        scenario("openai-completions", tools=[WEATHER])


def test_calls_said_whole_empty_or_beside_text_are_kept_once() -> None:
    """An Anthropic call of no arguments streams no fragment: `{}`, and an
    answer; a Responses call said whole by `arguments.done` (after fragments
    too) or only in the completed response; a chat chunk with text and a
    call's fragment keeps both."""
    empty = sse({"type": "message_start", "message": {"id": "m", "usage": {}}},
                {"type": "content_block_start", "index": 0, "content_block": {
                    "type": "tool_use", "id": "toolu_0", "name": "now", "input": {}}},
                {"type": "content_block_delta", "index": 0,
                 "delta": {"type": "input_json_delta", "partial_json": ""}},
                {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                 "usage": {"output_tokens": 3}}, {"type": "message_stop"})
    _, p = feed_all(anthropic.AnthropicStream(), empty)
    assert p.tool_calls == (ToolCall("toolu_0", "now", "{}"),)
    doubled = sse({"type": "response.output_item.added", "item": {
        "id": "fc", "type": "function_call", "call_id": "c", "name": "f",
        "arguments": '{"a": 1}'}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc", "delta": '{"a": 1}'},
        {"type": "response.function_call_arguments.done", "item_id": "fc",
         "arguments": '{"a": 1}'},
        {"type": "response.completed", "response": {"status": "completed"}})
    _, p = feed_all(responses.ResponsesStream(), doubled)
    assert p.tool_calls == (ToolCall("c", "f", '{"a": 1}'),)
    late = sse({"type": "response.output_text.delta", "delta": "ok"},
               {"type": "response.completed", "response": {"status": "completed", "output": [
                   {"type": "function_call", "id": "fc", "call_id": "c2", "name": "g",
                    "arguments": "{}"}]}})
    _, p = feed_all(responses.ResponsesStream(), late)
    assert p.tool_calls == (ToolCall("c2", "g", "{}"),)
    both = {"choices": [{"index": 0, "delta": {"content": "Let me check.", "tool_calls": [
        {"index": 0, "id": "call_b", "function": {"name": "f", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}]}
    _, p = feed_all(openai.OpenAIStream(keep_text=True),
                    sse(both, named=False) + b"data: [DONE]\n\n")
    assert p.text == "Let me check." and p.tool_calls == (ToolCall("call_b", "f", "{}"),)


ERROR_200 = b'{"error": {"message": "model overloaded", "type": "server_error"}}'


@pytest.mark.parametrize("new", [lambda: openai.OpenAIStream(), lambda: anthropic.AnthropicStream(),
                                 lambda: responses.ResponsesStream()])
def test_a_json_error_where_a_stream_was_asked_says_the_servers_words(new: Any) -> None:
    """A 200 whose body is an error object, not an event stream: a protocol
    failure with the server's message (it read as an incomplete stream of 0
    events, the message lost)."""
    parser = new()
    assert parser.feed(ERROR_200[:20]) + parser.feed(ERROR_200[20:]) == 0
    with pytest.raises(ProtocolError, match="^error in answer: model overloaded$"):
        parser.finish()
    other = new()
    other.feed(b'{"object": "list"}')
    with pytest.raises(ProtocolError, match="the answer is JSON, not an event stream"):
        other.finish()


def test_a_json_error_in_a_plain_answer_and_a_null_error_beside_chunks() -> None:
    with pytest.raises(ProtocolError, match="^error in answer: model overloaded$"):
        openai.parse_body(ERROR_200)
    chunk = {"choices": [{"index": 0, "delta": {"content": "a"}}], "error": None}
    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "error": None}
    n, parsed = feed_all(openai.OpenAIStream(), sse(chunk, chunk, last, named=False))
    assert n == 2 and parsed.finish_reason == "stop"


def test_an_embeddings_answer_without_vectors_is_incomplete() -> None:
    """Two items and no vectors is a 200 that answered nothing (it was a
    success: an audit); an error said with a 200 keeps the server's words."""
    parse = embeddings.prepare(EmbeddingsScenario(name="e", kind="openai-embeddings", inputs=2),
                               {}, "s").parse_body
    assert parse(b'{"data": [{"embedding": [0.1]}, {"embedding": "AAAA"}]}').doc
    with pytest.raises(IncompleteAnswer, match="2 of 2 items in `data` have no `embedding`"):
        parse(b'{"data": [{}, {"embedding": []}]}')
    with pytest.raises(ProtocolError, match="error in answer: overloaded"):
        parse(b'{"error": {"message": "overloaded"}}')
