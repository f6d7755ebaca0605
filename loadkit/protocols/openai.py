"""OpenAI-compatible chat and completions: response parsing (the requests
are built in protocols/generation.py, for every dialect).

Streaming answers are SSE; each chunk with non-empty generated text is one
token event, which may carry several tokens (vLLM's stream interval,
speculative decoding). Token counts come from the server's `usage`
(requested with `stream_options.include_usage`) when it sends one, else from
counted chunks; with `usage_per_event` (vLLM's continuous_usage_stats) each
event's own token count comes from the running usage it carries.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadkit.engine.adapter import IncompleteAnswer, ParsedResponse, ProtocolError, ToolCall
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.sse import SSEDecoder, SSEError
from loadkit.protocols.tally import MISSING, whole
from loadkit.protocols.tools import ToolCalls, arguments_text
from loadkit.workload.tokenizer import Counter as TokenCounter

REASONING_KEYS = ("reasoning_content", "reasoning")  # vLLM/SGLang, then OpenRouter/vLLM 0.10+


def parse_body(raw: bytes, counter: TokenCounter | None = None) -> ParsedResponse:
    """A non-streaming answer: JSON with choices and, usually, usage. One with
    no choice, or whose choice holds no output (no text, reasoning or tool
    call), is incomplete."""
    doc = answer_json(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise ProtocolError("response JSON has no `choices` list")
    if not doc["choices"] or not isinstance(c := doc["choices"][0], dict):
        raise IncompleteAnswer("answer has no choice")
    message = c.get("message")
    calls: tuple[ToolCall, ...] = ()
    reasoning = None
    if isinstance(message, dict):  # chat: its message is the stream's deltas in one
        text, _, _ = _delta({"choices": [{"delta": message}]})
        reasoning = next((r for key in REASONING_KEYS
                          if isinstance(r := message.get(key), str) and r), None)
        calls = tuple(ToolCall(str(call.get("id") or f"call_{i}"), str(f.get("name") or ""),
                               arguments_text(f.get("arguments")))
                      for i, call in enumerate(_list(message.get("tool_calls")))
                      if isinstance(call, dict) and isinstance(f := call.get("function"), dict))
    else:
        text = c.get("text") if isinstance(c.get("text"), str) and c.get("text") else None
    prompt, cached = _prompt_usage(doc)
    finish = c.get("finish_reason")
    return whole(text=text, reasoning=reasoning, calls=calls, output_tokens=_usage_tokens(doc),
                 reasoning_said=_reasoning_usage(doc),
                 finish=finish if isinstance(finish, str) and finish else None,
                 prompt=prompt, cached=cached, doc=doc, counter=counter,
                 finish_word="finish_reason")


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


class OpenAIStream:
    """Parses an OpenAI SSE stream incrementally.

    A token event is one that carries generated output: answer text,
    reasoning text (`reasoning_content`, `reasoning`) or a tool call's
    fragment; a role-only or empty event is not, so TTFT never counts from
    it. The stream is whole when it ended after a `finish_reason` or with
    `[DONE]` and carried at least one token; otherwise it is incomplete."""

    __slots__ = ("_sse", "_chunks", "_usage", "_done", "_text", "_per_event", "_prompt",
                 "_counter", "_counted", "_finish", "_answer_at", "_reasoning", "_reasoning_said",
                 "_calls", "_tool_event", "_answers", "_first_chars", "_chars")

    def __init__(self, keep_text: bool = False, counter: TokenCounter | None = None) -> None:
        self._sse = SSEDecoder()
        self._chunks = 0
        self._usage: int | None = None
        self._done = False
        self._finish: str | None = None  # the last finish_reason the stream gave
        self._text: list[str] | None = [] if keep_text else None
        # Tokens of each token event from the running usage it carried;
        # None once one came without it.
        self._per_event: list[int] | None = []
        self._prompt: tuple[int | None, int | None] = (None, None)
        # With a tokenizer: each event's text counted in tokens.
        self._counter = counter
        self._counted: list[int] = []
        self._answer_at: int | None = None  # the first answer event's index
        self._reasoning: list[int] = []  # indexes of reasoning events
        self._reasoning_said: int | None = None  # usage's reasoning_tokens
        self._calls = ToolCalls()  # tool calls, assembled from their fragments
        self._tool_event: int | None = None  # the last fragment's event index
        self._answers = 0  # answer-text events so far
        self._first_chars = self._chars = 0  # the first event's output, and all of it

    @property
    def ended(self) -> bool:
        return self._done

    def feed(self, data: bytes) -> int:
        events = 0
        try:
            payloads = self._sse.feed(data)
        except SSEError as exc:
            raise ProtocolError(str(exc)) from None
        for payload in payloads:
            if payload == b"[DONE]":
                self._done = True
                break  # the stream's end: what a server sends after it is no answer
            try:
                doc = orjson.loads(payload)
            except ValueError:
                raise ProtocolError(f"stream chunk is not JSON: {payload[:80]!r}") from None
            if not isinstance(doc, dict):
                raise ProtocolError("stream chunk is not a JSON object")
            if doc.get("error") is not None:  # `"error": null` beside a chunk is no error
                raise ProtocolError(f"error in stream: {str(doc['error'])[:200]}")
            before = self._usage
            usage = _usage_tokens(doc)
            if usage is not None:
                self._usage = usage
                self._prompt = _prompt_usage(doc)
                self._reasoning_said = _reasoning_usage(doc)
            answer, output, finish = _delta(doc)
            if finish is not None:
                self._finish = finish
            called = self._called(doc)  # a chunk may carry text and a call's fragment
            if output:
                index = self._chunks + events
                events += 1
                if not self._chars:
                    self._first_chars = len(output)
                self._chars += len(output)
                if called:
                    self._tool_event = index
                if answer is None:
                    if not called:
                        self._reasoning.append(index)
                else:
                    self._answers += 1
                    if self._answer_at is None:
                        self._answer_at = index
                if answer and self._text is not None:
                    self._text.append(answer)
                if self._counter is not None:
                    self._counted.append(max(1, self._counter.count(output)))
                per_event = self._per_event
                if per_event is not None:
                    if usage is None or usage <= (before or 0):
                        self._per_event = None  # not said, or not growing: not known
                    else:
                        per_event.append(usage - (before or 0))
        self._chunks += events
        return events

    def finish(self) -> ParsedResponse:
        finish = self._finish
        if not self._chunks and not self._done and (said := self._sse.not_a_stream()):
            raise ProtocolError(said)
        if finish is None and not self._done:
            raise IncompleteAnswer(
                f"stream ended after {self._chunks:,} token events with neither a "
                "finish_reason nor [DONE]")
        if not self._chunks:
            said = f" (its usage says {self._usage:,} tokens)" if self._usage else ""
            raise IncompleteAnswer(
                f"stream ended with no answer token (finish_reason "
                f"{finish or MISSING}{', [DONE]' if self._done else ''}){said}")
        text = "".join(self._text) if self._text is not None else None
        per_event = self._per_event if self._per_event and len(self._per_event) == \
            self._chunks else None
        source = "usage"
        if per_event is None and self._counter is not None:
            per_event, source = self._counted or None, "tokenizer"
        reason, no_done = finish or MISSING, not self._done
        reasoning = self._reasoning_said
        if reasoning is None and self._reasoning:
            reasoning = sum(per_event[i] for i in self._reasoning) if per_event \
                else len(self._reasoning)
        common: dict[str, Any] = {"finish_reason": reason, "no_done": no_done,
                                  "first_share": self._first_chars / self._chars,
                                  "answer_event": self._answer_at,
                                  "reasoning_tokens": reasoning,
                                  "tool_calls": self._calls.done(),
                                  "tool_event": self._tool_event}
        if self._usage is not None:
            return ParsedResponse(self._usage, "usage", text, event_tokens=per_event,
                                  event_source=source, prompt_tokens=self._prompt[0],
                                  cached_tokens=self._prompt[1], **common)
        if self._counter is not None:
            return ParsedResponse(sum(self._counted), "tokenizer", text,
                                  event_tokens=per_event, event_source=source, **common)
        return ParsedResponse(self._chunks, "chunks", text, **common)


    @property
    def answers(self) -> int:
        return self._answers

    @property
    def calling(self) -> bool:
        return bool(self._calls)

    def _called(self, doc: dict) -> bool:
        """Assemble the chunk's tool call fragments; True when it had any."""
        choices = doc.get("choices")
        first = choices[0] if isinstance(choices, list) and choices else None
        delta = first.get("delta") if isinstance(first, dict) else None
        calls = delta.get("tool_calls") if isinstance(delta, dict) else None
        if not isinstance(calls, list) or not calls:
            return False
        for i, call in enumerate(calls):
            if not isinstance(call, dict):
                continue
            key = call.get("index")
            key = i if key is None else key
            if not isinstance(key, (int, str)):  # a list or object cannot key a call
                raise ProtocolError(f"a tool call's index is not a number: {str(key)[:20]!r}")
            f = call.get("function")
            f = f if isinstance(f, dict) else {}
            self._calls.open(key, call.get("id"), f.get("name"))
            self._calls.add(key, f.get("arguments"))
        return True


def _usage_tokens(doc: dict) -> int | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict) or usage.get("completion_tokens") is None:
        return None
    n = usage["completion_tokens"]
    if type(n) is not int or n < 0:  # not bool, not negative: a server can lie
        raise ProtocolError(f"usage.completion_tokens is not a count: {str(n)[:20]!r}")
    return n


def _reasoning_usage(doc: dict) -> int | None:
    """usage.completion_tokens_details.reasoning_tokens, when a count."""
    usage = doc.get("usage")
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    n = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return n if type(n) is int and n >= 0 else None


def _prompt_usage(doc: dict) -> tuple[int | None, int | None]:
    """(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens), each
    None when absent or not a count (these only inform: never an error)."""
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None, None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None

    def count(v: object) -> int | None:
        return v if type(v) is int and v >= 0 else None
    return count(usage.get("prompt_tokens")), count(cached)


def _delta(doc: dict) -> tuple[str | None, str | None, str | None]:
    """(answer text, any generated output: answer, reasoning or a tool call's
    fragment, finish_reason) of one stream chunk's first choice."""
    choices = doc.get("choices")
    if not choices or not isinstance(choices, list):
        return None, None, None
    c = choices[0]
    if not isinstance(c, dict):
        raise ProtocolError("stream chunk has a malformed `choices` entry")
    finish = c.get("finish_reason")
    finish = finish if isinstance(finish, str) and finish else None
    delta = c.get("delta")
    if not isinstance(delta, dict):  # completions: the text is on the choice
        text = c.get("text")
        text = text if isinstance(text, str) and text else None
        return text, text, finish
    for key in ("content", "refusal"):  # a refusal is the model's answer (as in Responses)
        if isinstance(answer := delta.get(key), str) and answer:
            return answer, answer, finish
    for key in REASONING_KEYS:
        if isinstance(thought := delta.get(key), str) and thought:
            return None, thought, finish
    calls = delta.get("tool_calls")
    if isinstance(calls, list) and calls:
        parts = [f for call in calls if isinstance(call, dict)
                 for f in (call.get("function"),) if isinstance(f, dict)]
        fragment = "".join(str(f.get("name") or "") + str(f.get("arguments") or "")
                           for f in parts)
        return None, fragment or " ", finish  # a call's opening chunk is output too
    return None, None, finish
