"""Anthropic's Messages API (`/v1/messages`): answers and streams.

A stream is typed SSE events: `message_start` (with the prompt's usage),
content blocks (`content_block_start`, `content_block_delta`,
`content_block_stop`) and `message_delta` (the stop reason and the output
tokens so far), then `message_stop`. Token events are `text_delta`
(answer), `thinking_delta` (reasoning) and `input_json_delta` (a tool call's
fragment). Anthropic counts thinking in `output_tokens` and reports no
split, so reasoning tokens are counted from the events (or the tokenizer).
"""

from __future__ import annotations

from loadkit.engine.adapter import ParsedResponse, ProtocolError, ToolCall
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.tally import ANSWER, REASONING, TOOL, TypedEvents, count, whole
from loadkit.protocols.tools import arguments_text
from loadkit.workload.tokenizer import Counter as TokenCounter

_DELTAS = {"text_delta": (ANSWER, "text"), "thinking_delta": (REASONING, "thinking"),
           "input_json_delta": (TOOL, "partial_json")}
# Stop reasons in chat's words, so finish mixes read alike across dialects.
_STOPS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
          "tool_use": "tool_calls"}


class AnthropicStream(TypedEvents):
    __slots__ = ("_done", "_stop", "_output", "_prompt", "_id")

    def __init__(self, keep_text: bool = False, counter: TokenCounter | None = None) -> None:
        super().__init__(keep_text, counter)
        self._done = False
        self._stop: str | None = None
        self._output: int | None = None
        self._prompt: tuple[int | None, int | None] = (None, None)
        self._id: str | None = None

    def _event(self, doc: dict) -> None:
        kind = doc.get("type")
        if kind == "content_block_delta":
            delta = doc.get("delta")
            if not isinstance(delta, dict) or (found := _DELTAS.get(str(delta.get("type")))) is None:
                return
            cls, key = found
            if isinstance(output := delta.get(key), str) and output:
                if cls == TOOL:
                    self._tally.calls.add(doc.get("index"), output)
                self._tally.event(cls, output)
        elif kind == "content_block_start":
            block = doc.get("content_block")
            if isinstance(block, dict) and block.get("type") == "tool_use":
                # The call's name is generated output: its start is a token event,
                # as chat's opening chunk is (a call of no arguments streams none).
                self._tally.calls.open(doc.get("index"), block.get("id"), block.get("name"))
                self._tally.event(TOOL, str(block.get("name") or " "))
        elif kind == "message_delta":
            delta, usage = doc.get("delta"), doc.get("usage")
            if isinstance(delta, dict) and isinstance(stop := delta.get("stop_reason"), str):
                self._stop = _STOPS.get(stop, stop)
            if isinstance(usage, dict) and "output_tokens" in usage:
                self._output = count(usage["output_tokens"], "usage.output_tokens", strict=True)
        elif kind == "message_start":
            message = doc.get("message")
            if isinstance(message, dict):
                self._prompt = _prompt(message.get("usage"))
                self._id = message.get("id") if isinstance(message.get("id"), str) else None
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            error = doc.get("error")
            said = error.get("message") if isinstance(error, dict) else error
            raise ProtocolError(f"error in stream: {str(said)[:200]}")

    @property
    def ended(self) -> bool:
        return self._done

    def finish(self) -> ParsedResponse:
        self._check_stream()
        return self._tally.parsed(output_tokens=self._output, reasoning_said=None,
                                  finish=self._stop, done=self._done, end_name="message_stop",
                                  prompt=self._prompt[0], cached=self._prompt[1],
                                  response_id=self._id, empty_call="{}")


def parse_body(raw: bytes, counter: TokenCounter | None = None) -> ParsedResponse:
    doc = answer_json(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("content"), list):
        raise ProtocolError("response JSON has no `content` list")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for block in doc["content"]:
        if not isinstance(block, dict):
            raise ProtocolError("response has a malformed `content` block")
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            thoughts.append(block["thinking"])
        elif kind == "tool_use":
            calls.append(ToolCall(str(block.get("id") or ""), str(block.get("name") or ""),
                                  arguments_text(block.get("input"))))
    usage = doc.get("usage")
    output = count(usage.get("output_tokens"), "usage.output_tokens", strict=True) \
        if isinstance(usage, dict) else None
    stop = doc.get("stop_reason")
    prompt, cached = _prompt(usage)
    return whole(text="".join(texts) or None, reasoning="".join(thoughts), calls=tuple(calls),
                 output_tokens=output, reasoning_said=None,
                 finish=_STOPS.get(stop, stop) if isinstance(stop, str) else None,
                 prompt=prompt, cached=cached, doc=doc, counter=counter)


def _prompt(usage: object) -> tuple[int | None, int | None]:
    """(the whole prompt: input + cache read + cache written, of it read from
    the cache); Anthropic's `input_tokens` counts only the uncached part."""
    if not isinstance(usage, dict):
        return None, None
    parts = [count(usage.get(k), "") for k in
             ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")]
    if parts[0] is None:
        return None, None
    return sum(p or 0 for p in parts), parts[1]
