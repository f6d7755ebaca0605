"""OpenAI response parsing (loadkit.protocols.openai): token events counted from
a stream, usage preferred when the server sends it, and every malformed or
lying answer a protocol error."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadkit.engine.adapter import IncompleteAnswer, ProtocolError
from loadkit.protocols.openai import OpenAIStream, parse_body


def chunk(text: str | None = None, usage: int | None = None) -> bytes:
    doc: dict = {"choices": [{"delta": {"content": text}}] if text is not None else []}
    if usage is not None:
        doc["usage"] = {"completion_tokens": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def test_stream_counts_token_events_and_prefers_usage() -> None:
    s = OpenAIStream()
    assert s.feed(chunk("") + chunk("Hi")) == 1  # a role-only chunk is no token
    assert s.feed(chunk(" there") + chunk(" you")) == 2
    assert s.feed(chunk(usage=7) + b"data: [DONE]\n\n") == 0
    parsed = s.finish()
    assert (parsed.output_tokens, parsed.token_source) == (7, "usage")
    s = OpenAIStream()
    s.feed(chunk("a") + chunk("b") + b"data: [DONE]\n\n")
    assert (s.finish().output_tokens, s.finish().token_source) == (2, "chunks")


@pytest.mark.parametrize("payload,fragment", [
    (b"data: {not json\n\n", "not JSON"),
    (b'data: {"error": {"message": "overloaded"}}\n\n', "overloaded"),
    (b'data: {"choices": ["x"]}\n\n', "malformed"),
    # Not JSON by RFC 8259, though Python's json module would take them.
    (b'data: {"choices": [], "x": NaN}\n\n', "not JSON"),
    (b'data: {"choices": [], "x": 1e999}\n\n', "not JSON"),
    (b'data: {"choices": [{"delta": {"content": "\xff"}}]}\n\n', "not JSON"),
])
def test_stream_protocol_errors(payload: bytes, fragment: str) -> None:
    with pytest.raises(ProtocolError, match=fragment):
        OpenAIStream().feed(payload)


def finished(reason: str = "length") -> bytes:
    return b"data: " + json.dumps({"choices": [{"delta": {}, "finish_reason": reason}]}).encode() \
        + b"\n\n"


def test_a_stream_neither_finished_nor_done_is_incomplete() -> None:
    s = OpenAIStream()
    s.feed(chunk("a"))
    with pytest.raises(IncompleteAnswer, match="neither a finish_reason nor"):
        s.finish()


def test_a_finished_stream_without_done_is_whole_and_noted() -> None:
    """transformers serve: content, finish_reason, usage, then the body ends."""
    s = OpenAIStream()
    s.feed(chunk("") + chunk("a b") + chunk(" c") + finished("length") + chunk(usage=3))
    parsed = s.finish()
    assert (parsed.output_tokens, parsed.finish_reason, parsed.no_done) == (3, "length", True)


def test_a_stream_with_no_answer_token_is_incomplete_even_with_done() -> None:
    """The engine that cuts a waiting stream: 200, a role-only event, [DONE]."""
    s = OpenAIStream()
    assert s.feed(chunk("") + b"data: [DONE]\n\n") == 0
    with pytest.raises(IncompleteAnswer, match="no answer token"):
        s.finish()
    s = OpenAIStream()  # a usage that claims tokens the stream never carried
    s.feed(chunk("") + finished("stop") + chunk(usage=32) + b"data: [DONE]\n\n")
    with pytest.raises(IncompleteAnswer, match="usage says 32 tokens"):
        s.finish()


def test_done_without_finish_reason_is_whole_and_says_missing() -> None:
    s = OpenAIStream()
    s.feed(chunk("a") + b"data: [DONE]\n\n")
    parsed = s.finish()
    assert (parsed.finish_reason, parsed.no_done) == ("missing", False)


@pytest.mark.parametrize("delta,answer", [
    ({"reasoning_content": "hmm"}, None), ({"reasoning": "hmm"}, None),
    ({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ""}}]}, None),
    ({"content": "yes"}, "yes"),
])
def test_reasoning_and_tool_call_events_are_token_events(delta: dict[str, Any],
                                                         answer: str | None) -> None:
    """TTFT counts from the first event with any generated output; only the
    answer's text is kept (a session's history)."""
    s = OpenAIStream(keep_text=True)
    body = json.dumps({"choices": [{"delta": delta}]}).encode()
    assert s.feed(b"data: " + body + b"\n\n" + finished("tool_calls")) == 1
    parsed = s.finish()
    assert parsed.text == (answer or "") and parsed.finish_reason == "tool_calls"


def test_non_streaming_body() -> None:
    body = {"choices": [{"message": {"content": "a b c"}, "finish_reason": "stop"}],
            "usage": {"completion_tokens": 3}}
    parsed = parse_body(json.dumps(body).encode())
    assert (parsed.output_tokens, parsed.text, parsed.finish_reason) == (3, "a b c", "stop")
    with pytest.raises(ProtocolError):
        parse_body(b"<html>")


@pytest.mark.parametrize("body", [
    {"choices": [], "usage": {"completion_tokens": 3}},
    {"choices": [{"message": {"role": "assistant", "content": ""}}]},
    {"choices": [{"text": "", "finish_reason": "length"}]},
])
def test_a_non_streaming_answer_without_output_is_incomplete(body: dict[str, Any]) -> None:
    with pytest.raises(IncompleteAnswer):
        parse_body(json.dumps(body).encode())


def test_lying_usage_is_a_protocol_error() -> None:
    for bad in (b'-5', b'true', b'"7"', b'123456789012345678901234567890'):
        s = OpenAIStream()
        with pytest.raises(ProtocolError, match="completion_tokens"):
            s.feed(b'data: {"choices": [], "usage": {"completion_tokens": ' + bad + b'}}\n\n')


def sse(*docs: dict | str) -> bytes:
    return b"".join(b"data: " + (d.encode() if isinstance(d, str) else json.dumps(d).encode())
                    + b"\n\n" for d in docs)


def event(text: str, completion_tokens: int | None = None) -> dict:
    doc: dict = {"choices": [{"index": 0, "delta": {"content": text}}]}
    if completion_tokens is not None:
        doc["usage"] = {"prompt_tokens": 3, "completion_tokens": completion_tokens}
    return doc


def test_running_usage_in_every_event_gives_each_events_tokens() -> None:
    from loadkit.protocols.openai import OpenAIStream
    s = OpenAIStream()
    assert s.feed(sse(event("a", 1), event("b c d e", 5), event("f g", 7), "[DONE]")) == 3
    parsed = s.finish()
    assert parsed.event_tokens == [1, 4, 2] and parsed.output_tokens == 7


def test_usage_only_at_the_end_leaves_events_unknown() -> None:
    from loadkit.protocols.openai import OpenAIStream
    s = OpenAIStream()
    s.feed(sse(event("a"), event("b c"), {"choices": [], "usage": {"completion_tokens": 3}},
               "[DONE]"))
    parsed = s.finish()
    assert parsed.event_tokens is None and parsed.output_tokens == 3


def delta_event(key: str, text: str, usage: dict[str, Any] | None = None) -> bytes:
    doc: dict[str, Any] = {"choices": [{"delta": {key: text}}]}
    if usage is not None:
        doc["usage"] = usage
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def test_a_reasoning_stream_says_where_the_answer_starts_and_what_reasoning_cost() -> None:
    """Reasoning events, then answer events: the first answer event's index
    (TTFO's token), and the reasoning tokens from usage's details, else
    counted (per event when usage ran in every event, else one an event)."""
    s = OpenAIStream()
    thoughts = delta_event("reasoning_content", " hm") * 3 + delta_event("reasoning", " so")
    assert s.feed(thoughts + delta_event("content", " yes") * 2 + finished("stop")) == 6
    parsed = s.finish()
    assert (parsed.answer_event, parsed.reasoning_tokens) == (4, 4)
    said = {"completion_tokens": 9, "completion_tokens_details": {"reasoning_tokens": 7}}
    s = OpenAIStream()
    usage_event = b"data: " + json.dumps({"choices": [], "usage": said}).encode() + b"\n\n"
    s.feed(thoughts + delta_event("content", " yes") + usage_event + b"data: [DONE]\n\n")
    parsed = s.finish()
    assert (parsed.answer_event, parsed.reasoning_tokens, parsed.output_tokens) == (4, 7, 9)
    s = OpenAIStream()  # running usage: each reasoning event's own tokens
    s.feed(b"".join(delta_event("reasoning_content", " hm", {"completion_tokens": 2 * k})
                    for k in (1, 2)) + delta_event("content", " ok", {"completion_tokens": 5})
           + finished("stop"))
    assert s.finish().reasoning_tokens == 4
    s = OpenAIStream()  # no reasoning: the answer from the first event, none spent
    s.feed(delta_event("content", "a") + finished("stop"))
    assert (s.finish().answer_event, s.finish().reasoning_tokens) == (0, None)
    s = OpenAIStream()  # reasoning only (cut by max_tokens): no answer token
    s.feed(delta_event("reasoning_content", "hm") + finished("length"))
    assert (s.finish().answer_event, s.finish().reasoning_tokens) == (None, 1)


def test_a_non_streaming_reasoning_answer_reports_its_reasoning_tokens() -> None:
    body = {"choices": [{"message": {"content": "yes", "reasoning_content": "hm"},
                         "finish_reason": "stop"}],
            "usage": {"completion_tokens": 9, "completion_tokens_details":
                      {"reasoning_tokens": 7}}}
    parsed = parse_body(json.dumps(body).encode())
    assert (parsed.text, parsed.output_tokens, parsed.reasoning_tokens) == ("yes", 9, 7)


def test_a_stream_gives_its_first_events_share_of_the_output() -> None:
    """Where usage gives only the total, the first token event's share of the
    output text tells how many tokens it carried (the recorder's ITL)."""
    s = OpenAIStream()
    s.feed(chunk("") + chunk("one two ") + chunk("three four five six ") + chunk(usage=6))
    s.feed(b"data: [DONE]\n\n")
    assert s.finish().first_share == pytest.approx(8 / 28)
