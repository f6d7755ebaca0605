"""OpenAI-compatible chat and completions: request bodies and response parsing.

Streaming answers are SSE; each chunk with non-empty generated text is one
token event. Token counts come from the server's `usage` (requested with
`stream_options.include_usage`) when it sends one, else from counted chunks.
"""

from __future__ import annotations

import json
import random

from loadkit.engine.adapter import ParsedResponse, PreparedRequest, ProtocolError
from loadkit.protocols.sse import SSEDecoder
from loadkit.workload.models import OpenAIScenario

# Common short English words: roughly one token each for BPE tokenizers.
_WORDS = ("the of and to in is that for it as was with be by on not he this are or his "
          "from at which but have an they you were her she there been one all we their "
          "has would when if more no out so said what up its about into than them can "
          "only other new some time could these two may then do first any my now such "
          "like our over man me even most made after also did many before must through").split()


def prompt_text(tokens: int, rng: random.Random) -> str:
    """Local text of about `tokens` tokens; no tokenizer is downloaded."""
    return " ".join(rng.choice(_WORDS) for _ in range(tokens))


def prepare(scenario: OpenAIScenario, headers: dict[str, str], seed: int) -> PreparedRequest:
    rng = random.Random(f"{seed}:{scenario.name}:prompt")
    text = prompt_text(scenario.prompt_tokens, rng)
    body: dict = {"model": scenario.model, "max_tokens": scenario.max_tokens,
                  "stream": scenario.stream}
    if scenario.kind == "openai-chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    if scenario.stream:
        body["stream_options"] = {"include_usage": True}
    return PreparedRequest(
        method="POST", path=scenario.request_path,
        headers={"Content-Type": "application/json", **headers},
        body=json.dumps(body).encode(), stream=scenario.stream,
        new_stream_parser=OpenAIStream if scenario.stream else None,
        parse_body=parse_body)


def parse_body(raw: bytes) -> ParsedResponse:
    """A non-streaming answer: JSON with choices and, usually, usage."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ProtocolError(f"response is not JSON: {raw[:80]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise ProtocolError("response JSON has no `choices` list")
    tokens = _usage_tokens(doc)
    return ParsedResponse(tokens, "usage") if tokens is not None else ParsedResponse()


class OpenAIStream:
    """Parses an OpenAI SSE stream incrementally."""

    __slots__ = ("_sse", "_chunks", "_usage", "_done")

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._chunks = 0
        self._usage: int | None = None
        self._done = False

    def feed(self, data: bytes) -> int:
        events = 0
        for payload in self._sse.feed(data):
            if payload == b"[DONE]":
                self._done = True
                continue
            try:
                doc = json.loads(payload)
            except ValueError:
                raise ProtocolError(f"stream chunk is not JSON: {payload[:80]!r}") from None
            if not isinstance(doc, dict):
                raise ProtocolError("stream chunk is not a JSON object")
            if "error" in doc:
                raise ProtocolError(f"error in stream: {str(doc['error'])[:200]}")
            usage = _usage_tokens(doc)
            if usage is not None:
                self._usage = usage
            if _has_text(doc):
                events += 1
        self._chunks += events
        return events

    def finish(self) -> ParsedResponse:
        if not self._done:
            raise ProtocolError("stream ended without [DONE]")
        if self._usage is not None:
            return ParsedResponse(self._usage, "usage")
        return ParsedResponse(self._chunks, "chunks")


def _usage_tokens(doc: dict) -> int | None:
    usage = doc.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return usage["completion_tokens"]
    return None


def _has_text(doc: dict) -> bool:
    choices = doc.get("choices")
    if not choices or not isinstance(choices, list):
        return False
    c = choices[0]
    if not isinstance(c, dict):
        raise ProtocolError("stream chunk has a malformed `choices` entry")
    delta = c.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else c.get("text")
    return bool(text)
