"""OpenAI-compatible chat and completions: request bodies and response parsing.

Streaming answers are SSE; each chunk with non-empty generated text is one
token event. Token counts come from the server's `usage` (requested with
`stream_options.include_usage`) when it sends one, else from counted chunks.
Prompts start with the request's number, so no two share a prefix (as with
real users; a shared prefix would let a server's prefix cache flatter TTFT).
"""

from __future__ import annotations

import json
import random
from typing import Any

from loadkit.engine.adapter import ParsedResponse, PreparedRequest, ProtocolError
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.sse import SSEDecoder, SSEError
from loadkit.protocols.text import PromptText
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.scenarios import OpenAIScenario


def prepare(scenario: OpenAIScenario, headers: dict[str, str], seed: str,
            prompts: list[Prompt] | None = None) -> PreparedRequest:
    keep = scenario.checks.needs_body
    return PreparedRequest(
        method="POST", path=scenario.request_path,
        headers={"Content-Type": "application/json", **headers},
        build_body=_body_builder(scenario, seed, prompts),
        new_stream_parser=(lambda: OpenAIStream(keep_text=keep)) if scenario.stream else None,
        parse_body=parse_body, check=make_check(scenario.checks),
        ok_status=ok_statuses(scenario.checks.status))


def _body_builder(s: OpenAIScenario, seed: str, prompts: list[Prompt] | None):
    chat = s.kind == "openai-chat"
    fixed: dict[str, Any] = {"model": s.model, "stream": s.stream}
    if s.stream:
        fixed["stream_options"] = {"include_usage": True}
    if prompts:
        rng = random.Random(f"{seed}:{s.name}:prompts")

        def from_set(prompt_tokens: int | None, max_tokens: int | None,
                     seq: int) -> tuple[bytes, int | None]:
            p = prompts[rng.randrange(len(prompts))]
            asked = p.max_tokens or max_tokens  # a line's own max_tokens wins
            body = {**fixed, **_limits(s, asked)}
            if chat:
                body["messages"] = p.messages or [{"role": "user", "content": p.text}]
            else:
                body["prompt"] = p.text if p.text is not None else \
                    "\n".join(m["content"] for m in p.messages or [])
            return json.dumps(body).encode(), asked
        return from_set

    text = PromptText(f"{seed}:{s.name}:prompt")
    head = json.dumps(fixed)[:-1].encode() + b', "max_tokens": '
    extra = b', "ignore_eos": true, "min_tokens": ' if s.exact_output else None
    open_text = b', "messages": [{"role": "user", "content": "' if chat else b', "prompt": "'
    close = b'"}]}' if chat else b'"}'
    unique = s.unique_prompts

    def spliced(prompt_tokens: int | None, max_tokens: int | None,
                seq: int) -> tuple[bytes, int | None]:
        n = str(max_tokens).encode()
        nonce = b"%d: " % seq if unique else b""
        limits = n + extra + n if extra else n
        return (head + limits + open_text + nonce + text.tokens(prompt_tokens or 1) + close,
                max_tokens)
    return spliced


def _limits(s: OpenAIScenario, max_tokens: int | None) -> dict:
    out = {"max_tokens": max_tokens}
    if s.exact_output:
        out |= {"ignore_eos": True, "min_tokens": max_tokens}
    return out


def parse_body(raw: bytes) -> ParsedResponse:
    """A non-streaming answer: JSON with choices and, usually, usage."""
    try:
        doc = json.loads(raw)
    except ValueError:
        raise ProtocolError(f"response is not JSON: {raw[:80]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise ProtocolError("response JSON has no `choices` list")
    text = None
    if doc["choices"] and isinstance(doc["choices"][0], dict):
        c = doc["choices"][0]
        text = c["message"].get("content") if isinstance(c.get("message"), dict) else c.get("text")
    tokens = _usage_tokens(doc)
    return ParsedResponse(tokens, "usage" if tokens is not None else "none",
                          text if isinstance(text, str) else None, doc)


class OpenAIStream:
    """Parses an OpenAI SSE stream incrementally."""

    __slots__ = ("_sse", "_chunks", "_usage", "_done", "_text")

    def __init__(self, keep_text: bool = False) -> None:
        self._sse = SSEDecoder()
        self._chunks = 0
        self._usage: int | None = None
        self._done = False
        self._text: list[str] | None = [] if keep_text else None

    def feed(self, data: bytes) -> int:
        events = 0
        try:
            payloads = self._sse.feed(data)
        except SSEError as exc:
            raise ProtocolError(str(exc)) from None
        for payload in payloads:
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
            text = _chunk_text(doc)
            if text:
                events += 1
                if self._text is not None:
                    self._text.append(text)
        self._chunks += events
        return events

    def finish(self) -> ParsedResponse:
        if not self._done:
            raise ProtocolError("stream ended without [DONE]")
        text = "".join(self._text) if self._text is not None else None
        if self._usage is not None:
            return ParsedResponse(self._usage, "usage", text)
        return ParsedResponse(self._chunks, "chunks", text)


def _usage_tokens(doc: dict) -> int | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict) or usage.get("completion_tokens") is None:
        return None
    n = usage["completion_tokens"]
    if type(n) is not int or n < 0:  # not bool, not negative: a server can lie
        raise ProtocolError(f"usage.completion_tokens is not a count: {str(n)[:20]!r}")
    return n


def _chunk_text(doc: dict) -> str | None:
    choices = doc.get("choices")
    if not choices or not isinstance(choices, list):
        return None
    c = choices[0]
    if not isinstance(c, dict):
        raise ProtocolError("stream chunk has a malformed `choices` entry")
    delta = c.get("delta")
    text = delta.get("content") if isinstance(delta, dict) else c.get("text")
    return text if isinstance(text, str) else None
