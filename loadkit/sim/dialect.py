"""What every wire dialect shares: the parsed request, the planned answer, and
the small interface the timing loop in ``generate.py`` drives.

A dialect (OpenAI chat and text completions in ``openai_wire.py``, OpenAI
Responses in ``responses_wire.py``, Anthropic Messages in
``anthropic_wire.py``) turns a request body into a :class:`GenRequest`, and an
:class:`Answer` into bytes: a non-streamed JSON body, or a :class:`Frames`
object whose byte strings the loop writes at each token's time.  The loop
knows nothing of any dialect's events; a dialect knows nothing of timing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .vocab import Vocabulary, joined

if TYPE_CHECKING:
    from .media import MediaPart

# Answer kinds: vocabulary words, one tool call, a structured-output document.
WORDS = "words"
TOOL_CALL = "tool_call"
DOCUMENT = "document"


class RequestError(ValueError):
    """A client error: HTTP ``status`` (400 unless said) with the dialect's
    error body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400, err_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status
        self.err_type = err_type


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the client offers: its name and its parameters' JSON schema."""

    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class GenRequest:
    """The parts of a generation request that shape the simulated response."""

    kind: str
    output_tokens: int
    prompt_tokens: int
    stream: bool
    include_usage: bool
    # stream_options.continuous_usage_stats (vLLM): usage in every content event
    usage_per_event: bool = False
    prompt_text: str = ""  # the prompt's text, for the prefix cache
    reasoning_tokens: int = 0  # of a reasoning model's tokens, those before the answer
    tool: Tool | None = None  # the tool a call would name: the named choice, else the first
    tool_choice: str = "auto"  # auto (a share calls), required (always), none (never)
    tool_result_last: bool = False  # the last input is a tool's result: answer in text
    schema: Mapping[str, Any] | None = None  # structured output: the answer's JSON schema
    previous_response_id: str | None = None  # Responses: earlier context to add
    store: bool = False  # Responses: keep this response for a later previous_response_id
    media: tuple[MediaPart, ...] = ()  # images and audio, undecoded (media.py prices them)
    media_tokens: int = 0  # of prompt_tokens, the media's (set by media.priced)

    @property
    def generated(self) -> int:
        """Every token the model generates: reasoning, then the answer."""
        return self.reasoning_tokens + self.output_tokens


@dataclass(slots=True)
class Answer:
    """What one response says: ``thinking`` reasoning tokens, then the answer's
    tokens (``n`` in all), as vocabulary words, a tool call or a document.

    A tool call's arguments and a document are cut into exactly one fragment
    per answer token, each a pre-encoded JSON string literal (``pieces``), so
    a streamed event splices bytes as it does for vocabulary words.
    """

    kind: str
    vocab: Vocabulary
    thinking: int
    n: int
    pieces: tuple[bytes, ...] = ()  # a tool call's or document's fragments (JSON literals)
    document: str = ""  # the fragments' text, joined: the arguments or the document
    tool: str = ""  # the name of the called tool
    valid: bool = True  # the document or arguments are what the schema asks

    def chunk(self, start: int, stop: int) -> bytes:
        """JSON string literal of tokens start..stop (never across reasoning
        and answer)."""
        if self.pieces and start >= self.thinking:
            return joined(self.pieces, start - self.thinking, stop - self.thinking)
        return joined(self.vocab.json, start, stop)

    def reasoning_text(self) -> str:
        return self.vocab.text(self.thinking) if self.thinking else ""

    def text(self) -> str:
        """The answer after the reasoning: its words, or the document."""
        if self.kind != WORDS:
            return self.document
        return self.vocab.text(self.n)[len(self.reasoning_text()):]


class Frames(Protocol):
    """Pre-serialised SSE bytes of one streamed response, in the order sent.

    ``start`` goes out when the request gets its seat (before the prefill);
    ``content`` is one event of tokens (several SSE events where a block
    opens or closes with it); ``end`` after the last token; ``done`` last
    (``data: [DONE]`` where the dialect sends it, else empty).  Engine quirks
    read ``role_event``, ``cut_stream``, ``broken``, ``ping`` and ``error``.
    """

    start: bytes
    role_event: bytes
    cut_stream: bytes
    broken: bytes
    ping: bytes
    done: bytes

    def content(self, first: bool, last: bool, text: bytes, sent: int, prompt: int,
                reasoning: bool = False) -> bytes:
        """One content event: ``text`` a JSON string literal of the event's
        tokens; ``sent`` the tokens sent so far, this event's included;
        ``reasoning``: the event carries reasoning, not answer, tokens."""
        ...

    def error(self) -> bytes:
        """The error event of a stream that fails after its status line."""
        ...

    def end(self, usage: bool) -> bytes:
        """What follows the last token (``usage``: False when a quirk drops
        the usage event)."""
        ...


# (status, message, error type, param, code) -> the dialect's error body
ErrorShape = Callable[[int, str, str, "str | None", "str | None"], bytes]
Parse = Callable[[bytes, int, Mapping[str, str]], GenRequest]
MakeFrames = Callable[[GenRequest, Answer, str, int, str, "int | None"], Frames]
FullResponse = Callable[[GenRequest, Answer, str, int, str, "int | None"], bytes]


@dataclass(frozen=True, slots=True)
class Dialect:
    """One wire format: parse a request, say an answer, say an error."""

    name: str
    id_prefix: str  # of response ids: chatcmpl-, cmpl-, resp_, msg_
    parse: Parse  # (body, default max tokens, headers) -> GenRequest; RequestError
    frames: MakeFrames  # (request, answer, id, created, model, cached) -> Frames
    full_response: FullResponse  # the same -> a non-streamed body
    error_body: ErrorShape


# -- parsing helpers the dialects share -------------------------------------------------


def load_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise RequestError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    return body


def max_tokens(body: Mapping[str, Any], keys: tuple[str, ...], default: int) -> int:
    """The last of ``keys`` present (an integer >= 1), else ``default``."""
    n = default
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(f"'{key}' must be an integer >= 1", key)
        n = value
    return n


def stream_flag(body: Mapping[str, Any]) -> bool:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise RequestError("'stream' must be a boolean", "stream")
    return bool(stream)


def schema_of(value: Any, param: str) -> Mapping[str, Any]:
    """A JSON schema given by the client (an object); {} when absent."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"'{param}' must be a JSON schema object", param)
    return value


def pick_tool(tools: list[Tool], choice: str, named: str | None,
              param: str) -> tuple[Tool | None, str]:
    """The tool a call would name and the normalised choice (auto, required,
    none): a named choice must be one of the tools, and is always called."""
    if named is not None:
        for tool in tools:
            if tool.name == named:
                return tool, "required"
        raise RequestError(f"tool_choice names {named!r}, which is not among the tools",
                           param)
    if not tools:
        return None, "none"
    return tools[0], choice


NO_PARAMETERS: Mapping[str, Any] = {"type": "object", "properties": {}}


def tool_name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError("each tool needs a non-empty string 'name'", param)
    return value


def words_of(value: Any) -> str:
    """The text of a content value: a string, or the text parts of a list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(p["text"] for p in value
                        if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def id_suffix(rid: str) -> str:
    """The random part of a response id (``chatcmpl-<hex>``, ``resp_<hex>``...),
    which the ids of its items and calls reuse."""
    return rid[max(rid.rfind("-"), rid.rfind("_")) + 1:]
