"""OpenAI Responses API wire format (``POST /v1/responses``).

Request: ``model``, ``input`` (a string, or items: messages with ``role`` and
``content``, ``function_call`` and ``function_call_output``), ``instructions``,
``max_output_tokens``, ``stream``, ``tools`` (``{"type": "function", "name",
"parameters"}``), ``tool_choice``, ``text.format`` (``json_schema`` or
``json_object``), ``previous_response_id`` and ``store``.  Prompt tokens are
the words of every text part (instructions, message text, call arguments and
outputs) plus, with ``previous_response_id``, the prompt and output tokens of
that earlier response (kept in a bounded LRU, :class:`ResponseStore`).

A stream is SSE events ``event: <type>`` / ``data: <json>``, each object with
its ``type`` and a running ``sequence_number``, and no ``[DONE]``:
``response.created``, ``response.in_progress``; a reasoning item
(``response.output_item.added``, ``response.reasoning_text.delta`` per event,
``response.reasoning_text.done``, ``response.output_item.done``); then a
message (``output_item.added``, ``content_part.added``,
``output_text.delta`` per event, ``output_text.done``, ``content_part.done``,
``output_item.done``) or a function call (``output_item.added``,
``function_call_arguments.delta`` per event, ``function_call_arguments.done``,
``output_item.done``); last ``response.completed`` with the whole response,
whose ``status`` is ``completed`` for a tool call or a structured-output
document and ``incomplete`` (``max_output_tokens``) for words, which always
run to the limit.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .dialect import (
    NO_PARAMETERS,
    TOOL_CALL,
    WORDS,
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
from .media import MediaPart, responses_part
from .openai_wire import PING_COMMENT, error_shape
from .vocab import text_tokens

RESPONSES = "responses"
STORE_SIZE = 10_000
_COMPACT = (",", ":")


class ResponseStore:
    """Response id -> its prompt + output tokens, for ``previous_response_id``;
    the least recently used entries go first past ``capacity``."""

    __slots__ = ("capacity", "_tokens")

    def __init__(self, capacity: int = STORE_SIZE) -> None:
        self.capacity = capacity
        self._tokens: OrderedDict[str, int] = OrderedDict()

    def get(self, rid: str) -> int | None:
        tokens = self._tokens.get(rid)
        if tokens is not None:
            self._tokens.move_to_end(rid)
        return tokens

    def put(self, rid: str, tokens: int) -> None:
        self._tokens[rid] = tokens
        self._tokens.move_to_end(rid)
        if len(self._tokens) > self.capacity:
            self._tokens.popitem(last=False)

    def __len__(self) -> int:
        return len(self._tokens)


def not_found(rid: str) -> RequestError:
    return RequestError(f"Previous response with id '{rid}' not found.",
                        "previous_response_id", "previous_response_not_found", status=404)


# -- requests ----------------------------------------------------------------------------


def parse(raw: bytes, default_tokens: int, headers: Mapping[str, str]) -> GenRequest:
    body = load_object(raw)
    if "input" not in body:
        raise RequestError("Missing required parameter: 'input'.", "input")
    parts: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        parts.append(instructions)
    elif instructions is not None:
        raise RequestError("'instructions' must be a string", "instructions")
    items = body["input"]
    after_tool = False
    media: list[MediaPart] = []
    if isinstance(items, str):
        parts.append(items)
    elif isinstance(items, list):
        for item in items:
            if not isinstance(item, dict):
                raise RequestError("each input item must be an object", "input")
            kind = item.get("type")
            if kind == "function_call":
                parts.append(item.get("arguments") or "")
            elif kind == "function_call_output":
                parts.append(words_of(item.get("output")))
            elif kind in (None, "message"):
                content = item.get("content")
                parts.append(words_of(content))
                if isinstance(content, list):  # input_image, input_audio
                    media += [m for p in content if isinstance(p, dict)
                              and (m := responses_part(p)) is not None]
            # other items (reasoning, ...) carry nothing counted here
        after_tool = bool(items) and items[-1].get("type") == "function_call_output"
    else:
        raise RequestError("'input' must be a string or an array of input items", "input")
    text = " ".join(p for p in parts if isinstance(p, str))
    tool, choice = _tools(body)
    previous = body.get("previous_response_id")
    if previous is not None and not isinstance(previous, str):
        raise RequestError("'previous_response_id' must be a string", "previous_response_id")
    store = body.get("store", True)
    if not isinstance(store, bool):
        raise RequestError("'store' must be a boolean", "store")
    return GenRequest(RESPONSES, max_tokens(body, ("max_output_tokens",), default_tokens),
                      text_tokens(text), stream_flag(body), False, False, text,
                      tool=tool, tool_choice=choice, tool_result_last=after_tool,
                      schema=_text_format(body), previous_response_id=previous, store=store,
                      media=tuple(media))


def _tools(body: Mapping[str, Any]) -> tuple[Tool | None, str]:
    raw = body.get("tools")
    if raw is None:
        return None, "none"
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", "tools")
    tools = []
    for t in raw:
        if not isinstance(t, dict):
            raise RequestError("each tool must be an object", "tools")
        if t.get("type", "function") == "function":  # hosted tools are never called here
            tools.append(Tool(tool_name(t.get("name"), "tools"),
                              schema_of(t.get("parameters"), "tools") or NO_PARAMETERS))
    choice = body.get("tool_choice", "auto")
    named = None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            named = choice.get("name")
            if not isinstance(named, str):
                raise RequestError("a function 'tool_choice' needs a 'name'", "tool_choice")
        choice = "auto"  # allowed_tools, hosted tools: as auto
    elif choice not in ("auto", "required", "none"):
        raise RequestError("'tool_choice' must be 'auto', 'required', 'none' or an object",
                           "tool_choice")
    return pick_tool(tools, choice, named, "tool_choice")


def _text_format(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    text = body.get("text")
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        assert isinstance(fmt, dict)
        return schema_of(fmt.get("schema"), "text.format.schema")
    raise RequestError("'text.format.type' must be 'text', 'json_object' or 'json_schema'",
                       "text.format")


# -- responses ---------------------------------------------------------------------------


class _Ids:
    __slots__ = ("call", "fc", "msg", "rs")

    def __init__(self, rid: str) -> None:
        suffix = id_suffix(rid)
        self.rs, self.msg = "rs_" + suffix, "msg_" + suffix
        self.fc, self.call = "fc_" + suffix, "call_" + suffix


def _status(answer: Answer) -> str:
    return "incomplete" if answer.kind == WORDS else "completed"


def _reasoning_item(ids: _Ids, answer: Answer) -> dict[str, Any]:
    return {"id": ids.rs, "type": "reasoning", "summary": [],
            "content": [{"type": "reasoning_text", "text": answer.reasoning_text()}]}


def _part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


def _answer_item(ids: _Ids, answer: Answer, status: str) -> dict[str, Any]:
    if answer.kind == TOOL_CALL:
        return {"id": ids.fc, "type": "function_call", "call_id": ids.call,
                "name": answer.tool, "arguments": answer.document, "status": status}
    return {"id": ids.msg, "type": "message", "role": "assistant", "status": status,
            "content": [_part(answer.text())]}


def _response(req: GenRequest, answer: Answer, rid: str, created: int, model: str,
              cached: int | None) -> dict[str, Any]:
    ids, status = _Ids(rid), _status(answer)
    output = []
    if answer.thinking:
        output.append(_reasoning_item(ids, answer))
    if answer.n > answer.thinking:
        output.append(_answer_item(ids, answer, status))
    return {
        "id": rid, "object": "response", "created_at": created, "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete"
        else None,
        "model": model, "output": output, "max_output_tokens": req.generated,
        "previous_response_id": req.previous_response_id,
        "usage": {"input_tokens": req.prompt_tokens,
                  "input_tokens_details": {"cached_tokens": cached or 0},
                  "output_tokens": req.generated,
                  "output_tokens_details": {"reasoning_tokens": answer.thinking},
                  "total_tokens": req.prompt_tokens + req.generated}}


def full_response(req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                  cached: int | None = None) -> bytes:
    return json.dumps(_response(req, answer, rid, created, model, cached)).encode()


def _delta_head(kind: str) -> bytes:
    return b'event: %s\ndata: {"type":"%s","sequence_number":' % (kind.encode(), kind.encode())


class ResponsesFrames:
    """The SSE events of one streamed response; ``sequence_number`` counts them.

    A delta event is ``head + <sequence number> + mid + <json text> + "}"``;
    the events that open and close an item are encoded once per response.
    """

    __slots__ = ("_answer", "_answer_mid", "_answer_open", "_cached", "_created",
                 "_answer_head", "_ids", "_index", "_model", "_reasoning_closed",
                 "_reasoning_mid", "_reasoning_open", "_req", "_rid", "seq", "start")
    role_event = cut_stream = done = b""
    ping = PING_COMMENT
    broken = (b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta",'
              b'"sequence_num\n\n')
    _reasoning_head = _delta_head("response.reasoning_text.delta")

    def __init__(self, req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                 cached: int | None = None) -> None:
        self._req, self._answer, self._rid = req, answer, rid
        self._created, self._model, self._cached = created, model, cached
        self._ids = ids = _Ids(rid)
        self._index = 1 if answer.thinking else 0  # the answer item's output_index
        self._reasoning_open = self._reasoning_closed = self._answer_open = False
        self.seq = 0
        shell = {"id": rid, "object": "response", "created_at": created,
                 "status": "in_progress", "model": model, "output": []}
        self.start = (self._event("response.created", response=shell)
                      + self._event("response.in_progress", response=shell))
        self._reasoning_mid = (b',"item_id":"%s","output_index":0,"content_index":0,"delta":'
                               % ids.rs.encode())
        if answer.kind == TOOL_CALL:
            self._answer_head = _delta_head("response.function_call_arguments.delta")
            self._answer_mid = (b',"item_id":"%s","output_index":%d,"delta":'
                                % (ids.fc.encode(), self._index))
        else:
            self._answer_head = _delta_head("response.output_text.delta")
            self._answer_mid = (b',"item_id":"%s","output_index":%d,"content_index":0,"delta":'
                                % (ids.msg.encode(), self._index))

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = json.dumps({"type": kind, "sequence_number": self.seq, **fields},
                          separators=_COMPACT)
        self.seq += 1
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), data.encode())

    def _delta(self, head: bytes, mid: bytes, text: bytes) -> bytes:
        seq = self.seq
        self.seq = seq + 1
        return head + b"%d" % seq + mid + text + b"}\n\n"

    def content(self, first: bool, last: bool, text: bytes, sent: int, prompt: int,
                reasoning: bool = False) -> bytes:
        if reasoning:
            out = b"" if self._reasoning_open else self._open_reasoning()
            out += self._delta(self._reasoning_head, self._reasoning_mid, text)
            if sent >= self._answer.thinking:
                out += self._close_reasoning()
            return out
        out = b""
        if self._answer.thinking and not self._reasoning_closed:  # its last event was lost
            out += self._close_reasoning()
        if not self._answer_open:
            out += self._open_answer()
        out += self._delta(self._answer_head, self._answer_mid, text)
        if last:
            out += self._close_answer()
        return out

    def error(self) -> bytes:
        return self._event("error", code="server_error", message=(
            "The simulated server failed mid-stream (an injected error_in_stream)."),
            param=None)

    def end(self, usage: bool) -> bytes:
        return self._event("response.completed", response=_response(
            self._req, self._answer, self._rid, self._created, self._model, self._cached))

    # The events that open and close the items: once per response each.

    def _open_reasoning(self) -> bytes:
        self._reasoning_open = True
        return self._event("response.output_item.added", output_index=0,
                           item={"id": self._ids.rs, "type": "reasoning", "summary": []})

    def _close_reasoning(self) -> bytes:
        out = b"" if self._reasoning_open else self._open_reasoning()
        self._reasoning_closed = True
        item = _reasoning_item(self._ids, self._answer)
        return out + self._event(
            "response.reasoning_text.done", item_id=self._ids.rs, output_index=0,
            content_index=0, text=item["content"][0]["text"]
        ) + self._event("response.output_item.done", output_index=0, item=item)

    def _open_answer(self) -> bytes:
        self._answer_open = True
        ids, index = self._ids, self._index
        if self._answer.kind == TOOL_CALL:
            return self._event("response.output_item.added", output_index=index, item={
                "id": ids.fc, "type": "function_call", "call_id": ids.call,
                "name": self._answer.tool, "arguments": "", "status": "in_progress"})
        return self._event("response.output_item.added", output_index=index, item={
            "id": ids.msg, "type": "message", "role": "assistant", "status": "in_progress",
            "content": []}) + self._event("response.content_part.added", item_id=ids.msg,
                                          output_index=index, content_index=0, part=_part(""))

    def _close_answer(self) -> bytes:
        ids, index, answer = self._ids, self._index, self._answer
        item = _answer_item(ids, answer, _status(answer))
        if answer.kind == TOOL_CALL:
            return self._event("response.function_call_arguments.done", item_id=ids.fc,
                               output_index=index, arguments=answer.document
                               ) + self._event("response.output_item.done",
                                               output_index=index, item=item)
        text = item["content"][0]["text"]
        return (self._event("response.output_text.done", item_id=ids.msg, output_index=index,
                            content_index=0, text=text)
                + self._event("response.content_part.done", item_id=ids.msg,
                              output_index=index, content_index=0, part=_part(text))
                + self._event("response.output_item.done", output_index=index, item=item))


DIALECT = Dialect("responses", "resp_", parse, ResponsesFrames, full_response, error_shape)
