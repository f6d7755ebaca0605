"""OpenAI wire format for the simulator: request parsing and response bytes.

Kept apart from the aiohttp handlers so the hot streaming loop in
``server.py`` only concatenates pre-serialised byte strings: everything that
is constant for a response (id, created, model, JSON punctuation) is encoded
once per request, and every vocabulary word is JSON-encoded once per server.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

CHAT = "chat"
TEXT = "text"

# A small fixed vocabulary: realistic-looking output while staying one
# "token" per chunk.  The seed only chooses the order, so output is
# reproducible for a given SimConfig.seed.
_WORDS = (  # noqa: SIM905 - a sentence reads better than 84 quoted words
    "the of and to in is that for it as with was on be at by this had not are "
    "but from or have an they which one you were all we her she there would "
    "their will when who him been has more if no out so said what up its about "
    "into than them can only other new some could time these two may then do "
    "first any my now such like our over man me even most made after also did"
).split()
# What a broken "version B" says instead: easy for a response check to catch.
WRONG_WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
               "elit"]
_SEQUENCE_LEN = 1024


class RequestError(ValueError):
    """A client error that maps to HTTP 400 with an OpenAI error body."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_body(message: str, err_type: str = "invalid_request_error",
               param: str | None = None, code: str | None = None) -> bytes:
    """OpenAI-style error JSON, as clients (openai-python, vLLM) expect."""
    return json.dumps({"error": {"message": message, "type": err_type,
                                 "param": param, "code": code}}).encode()


class Vocabulary:
    """Seeded token stream; word i of every response is ``words[i % len]``."""

    def __init__(self, seed: int, vocabulary: list[str] = _WORDS) -> None:
        rng = random.Random(seed)
        self.words = tuple(" " + rng.choice(vocabulary) for _ in range(_SEQUENCE_LEN))
        # Pre-encoded JSON string literals, spliced straight into SSE frames.
        self.json = tuple(json.dumps(w).encode() for w in self.words)

    def text(self, n: int) -> str:
        full, rest = divmod(n, _SEQUENCE_LEN)
        return "".join(self.words) * full + "".join(self.words[:rest])


@dataclass(frozen=True, slots=True)
class GenRequest:
    """The parts of a completion request that shape the simulated response."""

    kind: str
    output_tokens: int
    prompt_tokens: int
    stream: bool
    include_usage: bool
    # stream_options.continuous_usage_stats (vLLM): usage in every content event
    usage_per_event: bool = False
    prompt_text: str = ""  # the prompt's text, for the prefix cache
    reasoning_tokens: int = 0  # of a reasoning model's tokens, those before the answer

    @property
    def generated(self) -> int:
        """Every token the model generates: reasoning, then the answer."""
        return self.reasoning_tokens + self.output_tokens


def approx_tokens(chars: int) -> int:
    # ~4 characters per token is the usual rule of thumb for English BPE.
    return max(1, -(-chars // 4))


def text_tokens(text: str) -> int:
    """A prompt's tokens: one per word, as common English words are one token
    each in BPE vocabularies (and as loadkit builds its prompts), so a
    generated prompt of N tokens counts N here."""
    return max(1, len(text.split()))


def _chat_prompt_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty array", "messages")
    parts: list[str] = []
    for msg in messages:
        if not isinstance(msg, dict):
            raise RequestError("each message must be an object", "messages")
        content = msg.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):  # multi-part content: count text parts
            parts += [p.get("text") or "" for p in content if isinstance(p, dict)]
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


def parse_request(raw: bytes, kind: str, default_tokens: int) -> GenRequest:
    """Validate a request body; raise :class:`RequestError` on client errors."""
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")

    if kind == CHAT:
        if "messages" not in body:
            raise RequestError("missing required parameter: 'messages'", "messages")
        text = _chat_prompt_text(body["messages"])
        prompt_tokens = text_tokens(text)
    else:
        if "prompt" not in body:
            raise RequestError("missing required parameter: 'prompt'", "prompt")
        prompt_tokens = _completion_prompt_tokens(body["prompt"])
        text = body["prompt"] if isinstance(body["prompt"], str) else ""

    # max_completion_tokens is the newer OpenAI name; it wins when both exist.
    n = default_tokens
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be an integer >= 1", key)
        n = value

    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    include_usage = bool(opts and opts.get("include_usage"))
    per_event = bool(opts and opts.get("continuous_usage_stats"))
    return GenRequest(kind, n, prompt_tokens, bool(stream), include_usage, per_event, text)


def _usage(req: GenRequest, cached: int | None) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": req.prompt_tokens,
                             "completion_tokens": req.generated,
                             "total_tokens": req.prompt_tokens + req.generated}
    if req.reasoning_tokens:  # as OpenAI and vLLM report a reasoning model's
        usage["completion_tokens_details"] = {"reasoning_tokens": req.reasoning_tokens}
    if cached is not None:  # only with the prefix cache on, as vLLM reports it
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def full_response(req: GenRequest, rid: str, created: int, model: str,
                  text: str, cached: int | None = None, reasoning: str = "") -> bytes:
    """The non-streaming response body (a reasoning model's reasoning in
    `reasoning_content`, as vLLM returns it)."""
    if req.kind == CHAT:
        message = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = reasoning
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "length"}
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None,
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


class StreamFrames:
    """Pre-serialised SSE events of one streaming response.

    A content event is ``head + <json word> + tail``: three byte strings and
    one concatenation per token, no JSON encoding on the hot path.
    """

    __slots__ = ("broken", "error_event", "first_head", "first_reasoning_head", "head",
                 "last_tail", "reasoning_head", "role_event", "tail", "usage_event",
                 "_usage_tail")

    def __init__(self, req: GenRequest, rid: str, created: int, model: str,
                 cached: int | None = None) -> None:
        obj = "chat.completion.chunk" if req.kind == CHAT else "text_completion"
        # '{"id":..,"object":..,"created":..,"model":..' without the closing brace.
        envelope = "data: " + json.dumps(
            {"id": rid, "object": obj, "created": created, "model": model},
            separators=(",", ":"))[:-1]
        if req.kind == CHAT:
            prefix = envelope + ',"choices":[{"index":0,"delta":{'
            # The role travels with the first token, as in OpenAI's streams.
            self.first_head = (prefix + '"role":"assistant","content":').encode()
            self.head = (prefix + '"content":').encode()
            # A reasoning model's thinking: vLLM's and SGLang's field.
            self.first_reasoning_head = (prefix + '"role":"assistant","reasoning_content":'
                                         ).encode()
            self.reasoning_head = (prefix + '"reasoning_content":').encode()
            self.tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            self.last_tail = b'},"logprobs":null,"finish_reason":"length"}]}\n\n'
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
        tail = self.last_tail if last else self.tail
        if self._usage_tail is not None:  # '...}]}\n\n' -> '...}],"usage":{...}}\n\n'
            tail = (tail[:-3] + b',"usage":' + self._usage_tail
                    + b'%d,"total_tokens":%d}}\n\n' % (sent, sent + prompt))
        if reasoning:
            return (self.first_reasoning_head if first else self.reasoning_head) + text + tail
        return (self.first_head if first else self.head) + text + tail


def joined(words: tuple[bytes, ...], start: int, stop: int) -> bytes:
    """JSON string literal of words[start:stop] (each a JSON literal, cycled)."""
    if stop - start == 1:
        return words[start % len(words)]
    return b'"' + b"".join(words[i % len(words)][1:-1] for i in range(start, stop)) + b'"'

