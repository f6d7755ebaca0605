"""OpenAI wire format for the simulator: chat and text completions, request
parsing and response bytes.

Kept apart from the aiohttp handlers so the hot streaming loop in
``generate.py`` only concatenates pre-serialised byte strings: everything that
is constant for a response (id, created, model, JSON punctuation) is encoded
once per request, and every vocabulary word is JSON-encoded once per server.

Chat requests may carry ``tools`` (with ``tool_choice``) and a
``response_format`` (``json_schema`` or ``json_object``); the answer is then a
tool call (``message.tool_calls``; streamed as ``delta.tool_calls``, its id
and name first, then one arguments fragment per token; finish_reason
``tool_calls``) or a JSON document in ``content`` (finish_reason ``stop``).
"""

from __future__ import annotations

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
)
from .media import MediaPart, chat_part
from .vocab import _WORDS, WRONG_WORDS, Vocabulary, approx_tokens, joined, text_tokens

__all__ = ["CHAT", "CHAT_DIALECT", "DONE_EVENT", "PING_COMMENT", "TEXT", "TEXT_DIALECT",
           "WRONG_WORDS", "_WORDS", "GenRequest", "RequestError", "StreamFrames", "Vocabulary",
           "approx_tokens", "error_body", "full_response", "joined", "parse_request",
           "text_tokens"]

CHAT = "chat"
TEXT = "text"


def error_body(message: str, err_type: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> bytes:
    """OpenAI-style error JSON, as clients (openai-python, vLLM) expect."""
    return json.dumps({"error": {"message": message, "type": err_type,
                                 "param": param, "code": code}}).encode()


def error_shape(status: int, message: str, err_type: str, param: str | None,
                code: str | None) -> bytes:
    """:func:`error_body` as a dialect's error shape (the status is not in the body)."""
    return error_body(message, err_type, param, code)


def _chat_prompt_text(messages: Any, media: list[MediaPart]) -> str:
    """The prompt's text; its image and audio parts go to ``media``."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array", "messages")
    parts: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise RequestError("each message must be an object", "messages")
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multi-part content: text parts and media
            for p in content:
                if isinstance(p, dict):
                    if (found := chat_part(p)) is not None:
                        media.append(found)
                    else:
                        parts.append(p.get("text") or "")
        calls = msg.get("tool_calls")  # an assistant's earlier calls: their arguments
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    parts.append(fn["arguments"])
    return " ".join(parts)  # a message boundary separates words


def _completion_prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, str):
        return text_tokens(prompt)
    if isinstance(prompt, list) and prompt:
        if all(isinstance(p, str) for p in prompt):
            return text_tokens(" ".join(prompt))
        if all(isinstance(p, int) for p in prompt):  # pre-tokenised prompt
            return len(prompt)
        if all(isinstance(p, list) for p in prompt):
            return max(1, sum(len(p) for p in prompt))
    raise RequestError("'prompt' must be a string, an array of strings, "
                       "or an array of token ids", "prompt")


def _chat_tools(body: Mapping[str, Any]) -> tuple[Tool | None, str]:
    """The tool a call would name, and the choice: auto, required or none."""
    raw = body.get("tools")
    if raw is None:
        return None, "none"
    if not isinstance(raw, list):
        raise RequestError("'tools' must be an array", "tools")
    tools = []
    for t in raw:
        if not isinstance(t, dict):
            raise RequestError("each tool must be an object", "tools")
        if t.get("type", "function") != "function":
            continue  # custom tools: never called here
        fn = t.get("function")
        if not isinstance(fn, dict):
            raise RequestError("a function tool needs a 'function' object", "tools")
        tools.append(Tool(tool_name(fn.get("name"), "tools"),
                          schema_of(fn.get("parameters"), "tools") or NO_PARAMETERS))
    choice = body.get("tool_choice", "auto")
    named = None
    if isinstance(choice, dict):
        fn = choice.get("function")
        named = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(named, str):
            raise RequestError("a named 'tool_choice' is {\"type\": \"function\", "
                               "\"function\": {\"name\": ...}}", "tool_choice")
    elif choice not in ("auto", "required", "none"):
        raise RequestError("'tool_choice' must be 'auto', 'required', 'none' or a named "
                           "function", "tool_choice")
    return pick_tool(tools, choice if isinstance(choice, str) else "required", named,
                     "tool_choice")


def _response_format(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The structured-output schema of `response_format`, or None for text."""
    fmt = body.get("response_format")
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict):
            raise RequestError("'response_format.json_schema' must be an object",
                               "response_format")
        return schema_of(spec.get("schema"), "response_format")
    raise RequestError("'response_format.type' must be 'text', 'json_object' or "
                       "'json_schema'", "response_format")


def parse_request(raw: bytes, kind: str, default_tokens: int) -> GenRequest:
    """Validate a request body; raise :class:`RequestError` on client errors."""
    body = load_object(raw)
    tool, choice, schema, after_tool = None, "none", None, False
    media: list[MediaPart] = []
    if kind == CHAT:
        if "messages" not in body:
            raise RequestError("missing required parameter: 'messages'", "messages")
        text = _chat_prompt_text(body["messages"], media)
        prompt_tokens = text_tokens(text)
        tool, choice = _chat_tools(body)
        schema = _response_format(body)
        last = body["messages"][-1]
        after_tool = last.get("role") in ("tool", "function")
    else:
        if "prompt" not in body:
            raise RequestError("missing required parameter: 'prompt'", "prompt")
        prompt_tokens = _completion_prompt_tokens(body["prompt"])
        text = body["prompt"] if isinstance(body["prompt"], str) else ""

    # max_completion_tokens is the newer OpenAI name; it wins when both exist.
    n = max_tokens(body, ("max_tokens", "max_completion_tokens"), default_tokens)
    stream = stream_flag(body)
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    include_usage = bool(opts and opts.get("include_usage"))
    per_event = bool(opts and opts.get("continuous_usage_stats"))
    return GenRequest(kind, n, prompt_tokens, stream, include_usage, per_event, text,
                      tool=tool, tool_choice=choice, tool_result_last=after_tool,
                      schema=schema, media=tuple(media))


def _usage(req: GenRequest, cached: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": req.prompt_tokens,
                             "completion_tokens": req.generated,
                             "total_tokens": req.prompt_tokens + req.generated}
    if req.reasoning_tokens:  # as OpenAI and vLLM report a reasoning model's
        usage["completion_tokens_details"] = {"reasoning_tokens": req.reasoning_tokens}
    if cached is not None:  # only with the prefix cache on, as vLLM reports it
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _finish(req: GenRequest, answer: Answer) -> str:
    if req.kind != CHAT:
        return "length"
    return {TOOL_CALL: "tool_calls", DOCUMENT: "stop"}.get(answer.kind, "length")


def full_response(req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                  cached: int | None = None) -> bytes:
    """The non-streaming response body (a reasoning model's reasoning in
    `reasoning_content`, as vLLM returns it)."""
    if req.kind == CHAT:
        message: dict[str, Any] = {"role": "assistant", "content": answer.text()}
        reasoning = answer.reasoning_text()
        if reasoning:
            message["reasoning_content"] = reasoning
        if answer.kind == TOOL_CALL:
            message["content"] = None
            message["tool_calls"] = [{"id": "call_" + id_suffix(rid), "type": "function",
                                      "function": {"name": answer.tool,
                                                   "arguments": answer.document}}]
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": _finish(req, answer)}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": answer.text(), "logprobs": None,
                  "finish_reason": "length"}
        obj = "text_completion"
    return json.dumps({"id": rid, "object": obj, "created": created,
                       "model": model, "choices": [choice],
                       "usage": _usage(req, cached)}).encode()


def broken(body: bytes) -> bytes:
    """A JSON document cut in half: what a malformed-chunk fault sends."""
    return body[:max(1, len(body) // 2)]


DONE_EVENT = b"data: [DONE]\n\n"
PING_COMMENT = b": ping\n\n"  # an SSE comment, as some servers send to keep a stream alive
_TAIL = b'},"logprobs":null,"finish_reason":null}]}\n\n'
_LENGTH_TAIL = b'},"logprobs":null,"finish_reason":"length"}]}\n\n'


class StreamFrames:
    """Pre-serialised SSE events of one streaming response.

    A content event is ``head + <json word> + tail``: three byte strings and
    one concatenation per token, no JSON encoding on the hot path.  A tool
    call's first event is preceded by one that names it (id, name, empty
    arguments), as OpenAI streams one.
    """

    __slots__ = ("broken", "cut_stream", "error_event", "first_head", "first_reasoning_head",
                 "head", "last_tail", "reasoning_head", "role_event", "tail", "usage_event",
                 "_first_opening", "_opening", "_usage_tail")
    start = b""
    done = DONE_EVENT
    ping = PING_COMMENT

    def __init__(self, req: GenRequest, answer: Answer, rid: str, created: int, model: str,
                 cached: int | None = None) -> None:
        obj = "chat.completion.chunk" if req.kind == CHAT else "text_completion"
        # '{"id":..,"object":..,"created":..,"model":..' without the closing brace.
        envelope = "data: " + json.dumps(
            {"id": rid, "object": obj, "created": created, "model": model},
            separators=(",", ":"))[:-1]
        self._opening: bytes | None = None
        self._first_opening: bytes | None = None
        if req.kind == CHAT:
            prefix = envelope + ',"choices":[{"index":0,"delta":{'
            # The role travels with the first token, as in OpenAI's streams.
            self.first_head = (prefix + '"role":"assistant","content":').encode()
            self.head = (prefix + '"content":').encode()
            # A reasoning model's thinking: vLLM's and SGLang's field.
            self.first_reasoning_head = (prefix + '"role":"assistant","reasoning_content":'
                                         ).encode()
            self.reasoning_head = (prefix + '"reasoning_content":').encode()
            self.tail = _TAIL
            self.last_tail = (b'},"logprobs":null,"finish_reason":"%s"}]}\n\n'
                              % _finish(req, answer).encode())
            if answer.kind == TOOL_CALL:
                self.first_head = self.head = (
                    prefix + '"tool_calls":[{"index":0,"function":{"arguments":').encode()
                self.tail = b"}}]" + _TAIL
                self.last_tail = b"}}]" + self.last_tail
                call = json.dumps({"index": 0, "id": "call_" + id_suffix(rid),
                                   "type": "function",
                                   "function": {"name": answer.tool, "arguments": ""}},
                                  separators=(",", ":"))
                opening = '"content":null,"tool_calls":[' + call + "]"
                self._opening = (prefix + opening).encode() + _TAIL
                self._first_opening = (prefix + '"role":"assistant",' + opening).encode() + _TAIL
        else:
            self.head = (envelope + ',"choices":[{"index":0,"text":').encode()
            self.first_head = self.first_reasoning_head = self.reasoning_head = self.head
            self.tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
            self.last_tail = b',"logprobs":null,"finish_reason":"length"}]}\n\n'
        # Per-event usage (vLLM's continuous_usage_stats): the same event with
        # a running `usage` after `choices`, as vLLM sends it.
        self._usage_tail = (b'{"prompt_tokens":%d,"completion_tokens":' % req.prompt_tokens
                            if req.usage_per_event else None)
        # A content event cut inside its JSON, for the malformed-chunk fault.
        self.broken = self.head[:len(self.head) * 2 // 3] + b"\n\n"
        # Engine quirks: a role-only first event; an error object mid-stream.
        empty = ('"delta":{"role":"assistant","content":""}' if req.kind == CHAT
                 else '"text":""')
        self.role_event = (envelope + ',"choices":[{"index":0,' + empty
                           + ',"logprobs":null,"finish_reason":null}]}\n\n').encode()
        self.cut_stream = self.role_event + DONE_EVENT
        self.error_event = b"data: " + error_body(
            "The simulated server failed mid-stream (an injected error_in_stream).",
            "server_error", code="500") + b"\n\n"
        self.usage_event = None
        if req.include_usage:
            usage = {"id": rid, "object": obj, "created": created, "model": model,
                     "choices": [], "usage": _usage(req, cached)}
            self.usage_event = (b"data: " + json.dumps(usage, separators=(",", ":")).encode()
                                + b"\n\n")

    def content(self, first: bool, last: bool, text: bytes, sent: int, prompt: int,
                reasoning: bool = False) -> bytes:
        """One content event: `text` a JSON string literal of the event's
        tokens; `sent` the tokens sent so far, this event's included;
        `reasoning`: the event carries reasoning, not answer, tokens."""
        if reasoning:  # never a tool call's: its tail is a plain one
            head = self.first_reasoning_head if first else self.reasoning_head
            tail = _LENGTH_TAIL if last else _TAIL
        else:
            head = self.first_head if first else self.head
            tail = self.last_tail if last else self.tail
            if self._opening is not None:  # a tool call's first event: name it first
                opening = self._first_opening if first else self._opening
                head = (opening or b"") + self.head
                self._opening = None
        if self._usage_tail is not None:  # '...}]}\n\n' -> '...}],"usage":{...}}\n\n'
            tail = (tail[:-3] + b',"usage":' + self._usage_tail
                    + b'%d,"total_tokens":%d}}\n\n' % (sent, sent + prompt))
        return head + text + tail

    def error(self) -> bytes:
        return self.error_event

    def end(self, usage: bool) -> bytes:
        return self.usage_event if usage and self.usage_event is not None else b""


def _parse_chat(raw: bytes, default_tokens: int, headers: Mapping[str, str]) -> GenRequest:
    return parse_request(raw, CHAT, default_tokens)


def _parse_text(raw: bytes, default_tokens: int, headers: Mapping[str, str]) -> GenRequest:
    return parse_request(raw, TEXT, default_tokens)


CHAT_DIALECT = Dialect("chat", "chatcmpl-", _parse_chat, StreamFrames, full_response,
                       error_shape)
TEXT_DIALECT = Dialect("completions", "cmpl-", _parse_text, StreamFrames, full_response,
                       error_shape)
