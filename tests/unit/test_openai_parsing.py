"""OpenAI response parsing (loadkit.protocols.openai): token events counted from
a stream, usage preferred when the server sends it, and every malformed or
lying answer a protocol error."""

from __future__ import annotations

import json

import pytest

from loadkit.engine.adapter import ProtocolError
from loadkit.protocols.openai import OpenAIStream, parse_body


def chunk(text: str | None = None, usage: int | None = None) -> bytes:
    doc: dict = {"choices": [{"delta": {"content": text}}] if text is not None else []}
    if usage is not None:
        doc["usage"] = {"completion_tokens": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


def test_stream_counts_token_events_and_prefers_usage():
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
def test_stream_protocol_errors(payload, fragment):
    with pytest.raises(ProtocolError, match=fragment):
        OpenAIStream().feed(payload)


def test_stream_without_done_is_a_protocol_error():
    s = OpenAIStream()
    s.feed(chunk("a"))
    with pytest.raises(ProtocolError, match="DONE"):
        s.finish()


def test_non_streaming_body():
    assert parse_body(b'{"choices": [], "usage": {"completion_tokens": 3}}').output_tokens == 3
    with pytest.raises(ProtocolError):
        parse_body(b"<html>")


def test_lying_usage_is_a_protocol_error():
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


def test_running_usage_in_every_event_gives_each_events_tokens():
    from loadkit.protocols.openai import OpenAIStream
    s = OpenAIStream()
    assert s.feed(sse(event("a", 1), event("b c d e", 5), event("f g", 7), "[DONE]")) == 3
    parsed = s.finish()
    assert parsed.event_tokens == [1, 4, 2] and parsed.output_tokens == 7


def test_usage_only_at_the_end_leaves_events_unknown():
    from loadkit.protocols.openai import OpenAIStream
    s = OpenAIStream()
    s.feed(sse(event("a"), event("b c"), {"choices": [], "usage": {"completion_tokens": 3}},
               "[DONE]"))
    parsed = s.finish()
    assert parsed.event_tokens is None and parsed.output_tokens == 3
