"""The token events of one streamed answer, classed as the dialect's parser
reads them: reasoning, answer text, or a tool call's fragment.

Shared by the Responses and Anthropic parsers (OpenAI chat's parser keeps
its own, for vLLM's per-event usage). Token counts come from the server's
usage where it sends one, else from the tokenizer, else one per event.
"""

from __future__ import annotations

from typing import Any

import orjson

from loadkit.engine.adapter import IncompleteAnswer, ParsedResponse, ProtocolError, ToolCall
from loadkit.protocols.sse import SSEDecoder, SSEError
from loadkit.protocols.tools import ToolCalls
from loadkit.workload.tokenizer import Counter as TokenCounter

MISSING = "missing"  # the finish_reason of an answer that gave none
ANSWER, REASONING, TOOL = "answer", "reasoning", "tool"


class TypedEvents:
    """A stream of typed JSON events (`{"type": ...}` per SSE event), as the
    Responses and Anthropic APIs send: decoding and the Tally once; each
    dialect reads its events in `_event`."""

    __slots__ = ("_sse", "_tally")

    def __init__(self, keep_text: bool = False, counter: TokenCounter | None = None) -> None:
        self._sse = SSEDecoder()
        self._tally = Tally(keep_text, counter)

    @property
    def answers(self) -> int:
        return self._tally.answers

    @property
    def calling(self) -> bool:
        return bool(self._tally.calls)

    def feed(self, data: bytes) -> int:
        before = self._tally.events
        try:
            payloads = self._sse.feed(data)
        except SSEError as exc:
            raise ProtocolError(str(exc)) from None
        for payload in payloads:
            try:
                doc = orjson.loads(payload)
            except ValueError:
                raise ProtocolError(f"stream event is not JSON: {payload[:80]!r}") from None
            if not isinstance(doc, dict):
                raise ProtocolError("stream event is not a JSON object")
            self._event(doc)
            if self.ended:
                break  # the stream's end: what a server sends after it is no answer
        return self._tally.events - before

    @property
    def ended(self) -> bool:
        raise NotImplementedError

    def _check_stream(self) -> None:
        """At the end: a body that held no event and was a JSON error says so."""
        if not self._tally.events and not self.ended and (said := self._sse.not_a_stream()):
            raise ProtocolError(said)

    def _event(self, doc: dict) -> None:
        raise NotImplementedError


def count(value: object, field: str, strict: bool = False) -> int | None:
    """A usage count: None when absent; not a count is an error where
    `strict` (the output tokens every number rests on), else ignored."""
    if type(value) is int and value >= 0:  # not bool, not negative: a server can lie
        return value
    if strict and value is not None:
        raise ProtocolError(f"{field} is not a count: {str(value)[:20]!r}")
    return None


class Tally:
    __slots__ = ("events", "answers", "_text", "_counter", "_counted", "_answer_at",
                 "_reasoning", "calls", "_tool_event", "_first_chars", "_chars")

    def __init__(self, keep_text: bool, counter: TokenCounter | None) -> None:
        self.events = 0
        self.answers = 0  # answer-text events
        self._text: list[str] | None = [] if keep_text else None
        self._counter = counter
        self._counted: list[int] = []  # each event's tokens, with a tokenizer
        self._answer_at: int | None = None
        self._reasoning: list[int] = []  # indexes of reasoning events
        self.calls = ToolCalls()
        self._tool_event: int | None = None  # the last tool fragment's index
        self._first_chars = self._chars = 0  # the first event's output, and all of it

    def event(self, kind: str, output: str) -> None:
        """One token event carrying `output` (non-empty)."""
        index = self.events
        self.events += 1
        if not self._chars:
            self._first_chars = len(output)
        self._chars += len(output)
        if kind == ANSWER:
            self.answers += 1
            if self._answer_at is None:
                self._answer_at = index
            if self._text is not None:
                self._text.append(output)
        elif kind == REASONING:
            self._reasoning.append(index)
        else:
            self._tool_event = index
        if self._counter is not None:
            self._counted.append(max(1, self._counter.count(output)))

    def parsed(self, *, output_tokens: int | None, reasoning_said: int | None,
               finish: str | None, done: bool, end_name: str, prompt: int | None = None,
               cached: int | None = None, response_id: str | None = None,
               empty_call: str = "") -> ParsedResponse:
        """The answer, or IncompleteAnswer: no token event, or neither a stop
        reason nor the stream's end event (`end_name`)."""
        if finish is None and not done:
            raise IncompleteAnswer(f"stream ended after {self.events:,} token events with "
                                   f"neither a stop reason nor {end_name}")
        if not self.events:
            said = f" (its usage says {output_tokens:,} tokens)" if output_tokens else ""
            raise IncompleteAnswer(f"stream ended with no output token (stop reason "
                                   f"{finish or MISSING}){said}")
        counted = self._counted or None
        reasoning = reasoning_said
        if reasoning is None and self._reasoning:
            reasoning = sum(counted[i] for i in self._reasoning) if counted \
                else len(self._reasoning)
        common: dict[str, Any] = {
            "text": "".join(self._text) if self._text is not None else None,
            "finish_reason": finish or MISSING, "no_done": not done,
            "answer_event": self._answer_at, "reasoning_tokens": reasoning,
            "tool_calls": self.calls.done(empty_call), "tool_event": self._tool_event,
            "response_id": response_id, "prompt_tokens": prompt, "cached_tokens": cached,
            "event_tokens": counted, "event_source": "tokenizer",
            "first_share": self._first_chars / self._chars if self._chars else None}
        if output_tokens is not None:
            return ParsedResponse(output_tokens, "usage", **common)
        if counted is not None:
            return ParsedResponse(sum(counted), "tokenizer", **common)
        return ParsedResponse(self.events, "chunks", **common)


def whole(*, text: str | None, reasoning: str | None, calls: tuple[ToolCall, ...],
          output_tokens: int | None, reasoning_said: int | None, finish: str | None,
          prompt: int | None, cached: int | None, doc: object,
          response_id: str | None = None, counter: TokenCounter | None = None,
          finish_word: str = "stop reason") -> ParsedResponse:
    """A non-streamed answer: IncompleteAnswer when it holds no output. With
    the workload's tokenizer (`counter`), what the server did not count is
    counted from the text, as a stream's events are."""
    if not text and not reasoning and not calls:
        said = f" (its usage says {output_tokens:,} tokens)" if output_tokens else ""
        raise IncompleteAnswer(f"answer with no output ({finish_word} "
                               f"{finish or MISSING}){said}")
    source = "usage" if output_tokens is not None else "none"
    if counter is not None:
        if output_tokens is None:
            said_whole = [text or "", reasoning or "", *(c.name + c.arguments for c in calls)]
            output_tokens = sum(counter.count(s) for s in said_whole if s)
            source = "tokenizer"
        if reasoning_said is None and reasoning:
            reasoning_said = counter.count(reasoning)
    return ParsedResponse(output_tokens, source, text, doc, prompt_tokens=prompt,
                          cached_tokens=cached, finish_reason=finish or MISSING,
                          reasoning_tokens=reasoning_said, tool_calls=calls,
                          response_id=response_id)
