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
    for bad in (b'-5', b'true', b'"7"'):
        s = OpenAIStream()
        with pytest.raises(ProtocolError, match="completion_tokens"):
            s.feed(b'data: {"choices": [], "usage": {"completion_tokens": ' + bad + b'}}\n\n')
