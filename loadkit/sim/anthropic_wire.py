"""Anthropic Messages API wire format (``POST /v1/messages``).

Request: header ``anthropic-version`` (required), ``model``, ``max_tokens``
(required), ``messages`` (``role`` user or assistant; ``content`` a string or
blocks: ``text``, ``tool_use``, ``tool_result``, ``thinking``...),
``system``, ``stream``, ``tools`` (``{"name", "description",
"input_schema"}``), ``tool_choice`` (``auto``, ``any``, ``none``, ``tool``),
``output_format`` (``json_schema``) and ``thinking`` (accepted, not
consulted: the server's ``reasoning_tokens`` knob says how long it thinks,
whatever a request asks).  Prompt tokens are the words of the system prompt,
text blocks, tool inputs and tool results (thinking blocks are not counted,
as Anthropic drops earlier turns' thinking).

A stream is SSE events ``event: <type>`` / ``data: <json>``:
``message_start``; a ``thinking`` block (``content_block_start``, a
``thinking_delta`` per event, a ``signature_delta``, ``content_block_stop``);
then a ``text`` block (``text_delta`` per event) or a ``tool_use`` block
(``input_json_delta`` per event); ``message_delta`` (``stop_reason``
``max_tokens``, ``end_turn`` for a structured-output document, ``tool_use``;
``usage.output_tokens`` every generated token, thinking included) and
``message_stop``.  Usage follows Anthropic's split of the prompt:
``input_tokens`` are the tokens not read from the prefix cache,
``cache_read_input_tokens`` those that were.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .dialect import (
    DOCUMENT,
    NO_PARAMETERS,
    TOOL_CALL,
    Answer,
    Dialect,
    GenRequest,
    RequestError,
    Tool,
    id_suffix,
    load_object,
    max_tokens,
    pick_tool,
    schema_of,
    stream_flag,
    tool_name,
    words_of,
)
from .media import MediaPart, anthropic_block
from .vocab import text_tokens

MESSAGES = "messages"
_COMPACT = (",", ":")
# HTTP status -> Anthropic's error type
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                429: "rate_limit_error", 500: "api_error", 503: "overloaded_error",
                529: "overloaded_error"}


def error_shape(status: int, message: str, err_type: str, param: str | None,
                code: str | None) -> bytes:
    """Anthropic's error body; its type follows from the HTTP status."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


# -- requests ----------------------------------------------------------------------------


def parse(raw: bytes, default_tokens: int, headers: Mapping[str, str]) -> GenRequest:
    if not headers.get("anthropic-version"):
        raise RequestError("anthropic-version: header is required")
    body = load_object(raw)
    if "max_tokens" not in body:
        raise RequestError("max_tokens: Field required", "max_tokens")
    n = max_tokens(body, ("max_tokens",), default_tokens)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: Field required (a non-empty array)", "messages")
    system = body.get("system")
    if system is not None and not isinstance(system, (str, list)):
        raise RequestError("system: must be a string or an array of text blocks", "system")
    parts = [words_of(system)]
    media: list[MediaPart] = []  # image blocks
    for msg in messages:
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise RequestError("messages: each message needs role 'user' or 'assistant'",
                               "messages")
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [_block_text(b) for b in content if isinstance(b, dict)]
            media += [m for b in content if isinstance(b, dict)
                      and (m := anthropic_block(b)) is not None]
        else:
            raise RequestError("messages: content must be a string or an array of blocks",
                               "messages")
    last = messages[-1].get("content")
    after_tool = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last)
    text = " ".join(parts)
    tool, choice = _tools(body)
    return GenRequest(MESSAGES, n, text_tokens(text), stream_flag(body), False, False, text,
                      tool=tool, tool_choice=choice, tool_result_last=after_tool,
                      schema=_output_format(body), media=tuple(media))


def _block_text(block: Mapping[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return text if isinstance(text, str) else ""
    if kind == "tool_use":
        return json.dumps(block.get("input", {}))
    if kind == "tool_result":
        return words_of(block.get("content"))
    return ""  # thinking, images, documents...: not counted


def _tools(body: Mapping[str, Any]) -> tuple[Tool | None, str]:
    raw = body.get("tools")
    if raw is None:
        return None, "none"
    if not isinstance(raw, list):
        raise RequestError("tools: must be an array", "tools")
    tools = []
    for t in raw:
        if not isinstance(t, dict):
            raise RequestError("tools: each tool must be an object", "tools")
        if "input_schema" in t or "type" not in t or t.get("type") == "custom":
            tools.append(Tool(tool_name(t.get("name"), "tools"),
                              schema_of(t.get("input_schema"), "tools") or NO_PARAMETERS))
        # server tools (web_search...) are never called here
    choice = body.get("tool_choice", {"type": "auto"})
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool":
        assert isinstance(choice, dict)
        named = choice.get("name")
        if not isinstance(named, str):
            raise RequestError("tool_choice: type 'tool' needs a 'name'", "tool_choice")
        return pick_tool(tools, "required", named, "tool_choice")
    if kind not in ("auto", "any", "none"):
        raise RequestError("tool_choice: type must be 'auto', 'any', 'tool' or 'none'",
                           "tool_choice")
    return pick_tool(tools, "required" if kind == "any" else str(kind), None, "tool_choice")


def _output_format(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    fmt = body.get("output_format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise RequestError("output_format: type must be 'json_schema'", "output_format")
    return schema_of(fmt.get("schema"), "output_format.schema")


# -- responses ---------------------------------------------------------------------------


def _stop_reason(answer: Answer) -> str:
    return {TOOL_CALL: "tool_use", DOCUMENT: "end_turn"}.get(answer.kind, "max_tokens")


def _signature(rid: str) -> str:
    return base64.b64encode(hashlib.sha256(rid.encode()).digest() * 2).decode()


def _usage(req: GenRequest, cached: int | None, output: int) -> dict[str, Any]:
    return {"input_tokens": req.prompt_tokens - (cached or 0),
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached or 0,
            "output_tokens": output}


def full_response(req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                  cached: int | None = None) -> bytes:
    content: list[dict[str, Any]] = []
    if answer.thinking:
        content.append({"type": "thinking", "thinking": answer.reasoning_text(),
                        "signature": _signature(rid)})
    if answer.kind == TOOL_CALL:
        try:
            arguments: Any = json.loads(answer.document)
        except ValueError:  # a malformed call: its input as the broken text it is
            arguments = answer.document
        content.append({"type": "tool_use", "id": "toolu_" + id_suffix(rid),
                        "name": answer.tool, "input": arguments})
    elif answer.n > answer.thinking:
        content.append({"type": "text", "text": answer.text()})
    return json.dumps({"id": rid, "type": "message", "role": "assistant", "model": model,
                       "content": content, "stop_reason": _stop_reason(answer),
                       "stop_sequence": None,
                       "usage": _usage(req, cached, req.generated)}).encode()


def _event(kind: str, **fields: Any) -> bytes:
    data = json.dumps({"type": kind, **fields}, separators=_COMPACT)
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), data.encode())


def _delta_head(index: int, kind: str, field: str) -> bytes:
    return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
            b'"delta":{"type":"%s","%s":' % (index, kind.encode(), field.encode()))


_DELTA_TAIL = b"}}\n\n"


class MessagesFrames:
    """The SSE events of one streamed message.  A delta event is ``head +
    <json text> + tail``; a block's start and stop are encoded once."""

    __slots__ = ("_answer", "_answer_head", "_answer_open", "_index", "_reasoning_closed",
                 "_reasoning_open", "_rid", "start")
    role_event = cut_stream = done = b""
    ping = _event("ping")
    broken = b'event: content_block_delta\ndata: {"type":"content_block_delta","ind\n\n'
    _thinking_head = _delta_head(0, "thinking_delta", "thinking")

    def __init__(self, req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                 cached: int | None = None) -> None:
        self._answer, self._rid = answer, rid
        self._index = 1 if answer.thinking else 0  # the answer block's
        self._reasoning_open = self._reasoning_closed = self._answer_open = False
        self.start = _event("message_start", message={
            "id": rid, "type": "message", "role": "assistant", "content": [], "model": model,
            "stop_reason": None, "stop_sequence": None, "usage": _usage(req, cached, 1)})
        self._answer_head = (_delta_head(self._index, "input_json_delta", "partial_json")
                             if answer.kind == TOOL_CALL
                             else _delta_head(self._index, "text_delta", "text"))

    def content(self, first: bool, last: bool, text: bytes, sent: int, prompt: int,
                reasoning: bool = False) -> bytes:
        if reasoning:
            out = b"" if self._reasoning_open else self._open_thinking()
            out += self._thinking_head + text + _DELTA_TAIL
            if sent >= self._answer.thinking:
                out += self._close_thinking()
            return out
        out = b""
        if self._answer.thinking and not self._reasoning_closed:  # its last event was lost
            out += self._close_thinking()
        if not self._answer_open:
            self._answer_open = True
            block: dict[str, Any] = (
                {"type": "tool_use", "id": "toolu_" + id_suffix(self._rid),
                 "name": self._answer.tool, "input": {}}
                if self._answer.kind == TOOL_CALL else {"type": "text", "text": ""})
            out += _event("content_block_start", index=self._index, content_block=block)
        out += self._answer_head + text + _DELTA_TAIL
        if last:
            out += _event("content_block_stop", index=self._index)
        return out

    def error(self) -> bytes:
        return _event("error", error={
            "type": "overloaded_error",
            "message": "The simulated server failed mid-stream (an injected error_in_stream)."})

    def end(self, usage: bool) -> bytes:
        answer = self._answer
        return (_event("message_delta", delta={"stop_reason": _stop_reason(answer),
                                               "stop_sequence": None},
                       usage={"output_tokens": answer.n})
                + _event("message_stop"))

    def _open_thinking(self) -> bytes:
        self._reasoning_open = True
        return _event("content_block_start", index=0,
                      content_block={"type": "thinking", "thinking": ""})

    def _close_thinking(self) -> bytes:
        out = b"" if self._reasoning_open else self._open_thinking()
        self._reasoning_closed = True
        return out + _event("content_block_delta", index=0, delta={
            "type": "signature_delta", "signature": _signature(self._rid)}
        ) + _event("content_block_stop", index=0)


DIALECT = Dialect("messages", "msg_", parse, MessagesFrames, full_response, error_shape)
