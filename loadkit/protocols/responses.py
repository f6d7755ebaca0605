"""OpenAI's Responses API (`/v1/responses`): answers and streams.

A stream is typed SSE events. Token events are `response.output_text.delta`
(answer), `response.reasoning_text.delta` and
`response.reasoning_summary_text.delta` (reasoning) and
`response.function_call_arguments.delta` (a call's fragment), and a function
call's opening `response.output_item.added` (or, for calls said only in
`response.completed`, each call there), as in chat and Anthropic; the stream is
whole at `response.completed` (or `response.incomplete`), which carries the
response with its `usage`. `response.failed` and `error` events break it.
"""

from __future__ import annotations

from loadkit.engine.adapter import ParsedResponse, ProtocolError, ToolCall
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.tally import ANSWER, REASONING, TOOL, TypedEvents, count, whole
from loadkit.protocols.tools import arguments_text
from loadkit.workload.tokenizer import Counter as TokenCounter

_DELTAS = {"response.output_text.delta": ANSWER, "response.refusal.delta": ANSWER,
           "response.reasoning_text.delta": REASONING,
           "response.reasoning_summary_text.delta": REASONING,
           "response.function_call_arguments.delta": TOOL}
_ENDS = ("response.completed", "response.incomplete")


class ResponsesStream(TypedEvents):
    __slots__ = ("_done", "_response")

    def __init__(self, keep_text: bool = False, counter: TokenCounter | None = None) -> None:
        super().__init__(keep_text, counter)
        self._done = False
        self._response: dict = {}  # response.created's, then the final one

    def _event(self, doc: dict) -> None:
        kind = doc.get("type")
        if (cls := _DELTAS.get(kind)) is not None:  # type: ignore[arg-type]
            delta = doc.get("delta")
            if isinstance(delta, str) and delta:
                if cls == TOOL:
                    self._tally.calls.add(doc.get("item_id"), delta)
                self._tally.event(cls, delta)
        elif kind == "response.output_item.added":
            item = doc.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                self._tally.calls.open(item.get("id"), item.get("call_id"), item.get("name"))
                self._tally.calls.add(item.get("id"), item.get("arguments"))
                # The call's opening is output, as chat's first tool chunk and
                # Anthropic's tool_use block are: TTFT means the same in each.
                self._tally.event(TOOL, str(item.get("name") or " "))
        elif kind == "response.function_call_arguments.done":
            if isinstance(whole := doc.get("arguments"), str):
                self._tally.calls.whole(doc.get("item_id"), whole)
        elif kind == "response.created" or kind in _ENDS:
            if isinstance(response := doc.get("response"), dict):
                self._response = response
                if kind in _ENDS and not self._tally.calls:  # calls said only at the end
                    for item in _list(response.get("output")):
                        if isinstance(item, dict) and item.get("type") == "function_call":
                            key = item.get("id") or item.get("call_id")
                            self._tally.calls.open(key, item.get("call_id"), item.get("name"))
                            self._tally.calls.whole(key, arguments_text(item.get("arguments")))
                            self._tally.event(TOOL, str(item.get("name") or " "))
            self._done = self._done or kind in _ENDS
        elif kind == "response.failed":
            response = doc.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise ProtocolError(f"response failed: {str(error)[:200]}")
        elif kind == "error" or "error" in doc and kind is None:
            raise ProtocolError(f"error in stream: {str(doc.get('message') or doc)[:200]}")

    @property
    def ended(self) -> bool:
        return self._done

    def finish(self) -> ParsedResponse:
        self._check_stream()
        r = self._response
        prompt, cached, output, reasoning = _usage(r) if self._done else (None,) * 4
        rid = r.get("id")
        return self._tally.parsed(
            output_tokens=output, reasoning_said=reasoning,
            finish=_finish(r, bool(self._tally.calls)) if self._done else None,
            done=self._done, end_name="response.completed", prompt=prompt, cached=cached,
            response_id=rid if isinstance(rid, str) else None)


def parse_body(raw: bytes, counter: TokenCounter | None = None) -> ParsedResponse:
    doc = answer_json(raw)
    if not isinstance(doc, dict) or not isinstance(doc.get("output"), list):
        raise ProtocolError("response JSON has no `output` list")
    if doc.get("status") == "failed":
        raise ProtocolError(f"response failed: {str(doc.get('error'))[:200]}")
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for item in doc["output"]:
        if not isinstance(item, dict):
            raise ProtocolError("response has a malformed `output` item")
        kind = item.get("type")
        if kind == "function_call":
            calls.append(ToolCall(str(item.get("call_id") or item.get("id") or ""),
                                  str(item.get("name") or ""),
                                  arguments_text(item.get("arguments"))))
            continue
        parts = [*_list(item.get("content")), *_list(item.get("summary"))]
        said = [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]
        (thoughts if kind == "reasoning" else texts).extend(said)
    prompt, cached, output, reasoning = _usage(doc)
    rid = doc.get("id")
    return whole(text="".join(texts) or None, reasoning="".join(thoughts), calls=tuple(calls),
                 output_tokens=output, reasoning_said=reasoning,
                 finish=_finish(doc, bool(calls)), prompt=prompt, cached=cached, doc=doc,
                 response_id=rid if isinstance(rid, str) else None, counter=counter)


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _usage(r: dict) -> tuple[int | None, int | None, int | None, int | None]:
    """(input tokens, of them cached, output tokens, of them reasoning)."""
    usage = r.get("usage")
    if not isinstance(usage, dict):
        return None, None, None, None
    into, out = usage.get("input_tokens_details"), usage.get("output_tokens_details")
    return (count(usage.get("input_tokens"), "usage.input_tokens"),
            count(into.get("cached_tokens"), "") if isinstance(into, dict) else None,
            count(usage.get("output_tokens"), "usage.output_tokens", strict=True),
            count(out.get("reasoning_tokens"), "") if isinstance(out, dict) else None)


def _finish(r: dict, called: bool) -> str | None:
    """The status in chat's words: stop, length, tool_calls, or the reason."""
    status = r.get("status")
    if status == "completed":
        return "tool_calls" if called else "stop"
    if status == "incomplete":
        details = r.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    return status if isinstance(status, str) and status else None
