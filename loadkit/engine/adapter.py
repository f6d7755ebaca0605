"""The interface the engine needs from a protocol adapter (the engine owns it).

`protocols/` implements it: each adapter turns a scenario into a
:class:`PreparedRequest` and parses answers into :class:`ParsedResponse`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class ProtocolError(Exception):
    """The server's answer broke the protocol (bad JSON, bad SSE, ...).

    Raised by parsers and caught by the engine, which records it as the
    `protocol` error kind; it never escapes a run.
    """


class IncompleteAnswer(ProtocolError):
    """A well-formed answer that is not a whole answer: a stream that ended
    with no answer token, or neither finished (`finish_reason`) nor closed
    with `[DONE]`. Recorded as the `incomplete` error kind: a server that
    returns empty answers must never pass as one that answered."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model made, its arguments as they came (a JSON
    text, assembled across stream events; not trusted to be JSON)."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class ParsedResponse:
    """What a finished response told us: output tokens, and for checks its
    generated text and JSON document when asked to keep them."""

    output_tokens: int | None = None
    token_source: str = "none"  # "usage" | "chunks" | "tokenizer" | "none"
    text: str | None = None
    doc: object = None
    # Tokens in each streamed content event, when the server said so (usage
    # in every event); None: not known event by event.
    event_tokens: list[int] | None = None
    event_source: str = "usage"  # where event_tokens came from: usage | tokenizer
    # The first token event's share of the stream's output text: where only
    # the total is known, how many tokens it carried (the rest are spread).
    first_share: float | None = None
    # The server's count of the prompt (usage.prompt_tokens) and of its part
    # served from a prefix cache (usage.prompt_tokens_details.cached_tokens).
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    # Rerank and score: the scores answered, and why their order is wrong (None: right).
    items: int | None = None
    item_problem: str | None = None
    item_top: int | None = None  # the largest document index answered (a check: < documents sent)
    # Why generation stopped (`length`, `stop`, `tool_calls`, ...; "missing"
    # when the server said none); None where the protocol has no such field.
    finish_reason: str | None = None
    # The stream ended after its finish_reason without `data: [DONE]`
    # (transformers serve): complete, but noted.
    no_done: bool = False
    # Reasoning models: the index of the first token event carrying answer
    # text (None: no answer text, or not streamed), and the tokens spent
    # reasoning (usage's completion_tokens_details.reasoning_tokens, else
    # those of the reasoning events; None: no reasoning seen or said).
    answer_event: int | None = None
    reasoning_tokens: int | None = None
    # Agents: the calls the answer made, and the index of the token event
    # that completed them (None: not streamed, or no call).
    tool_calls: tuple[ToolCall, ...] = ()
    tool_event: int | None = None
    response_id: str | None = None  # the Responses API's, for previous_response_id


class StreamParser(Protocol):
    """Fed raw bytes as they arrive; returns how many token events they held.
    `answers`: the answer-text events so far; `calling`: a tool call has
    begun (what a client that leaves after N tokens, or at a call, reads);
    `ended`: the stream's own end ([DONE], message_stop, response.completed,
    triton_final_response) was read, and nothing after it is the answer's."""

    def feed(self, data: bytes) -> int: ...

    def finish(self) -> ParsedResponse: ...

    @property
    def ended(self) -> bool: ...

    @property
    def answers(self) -> int: ...

    @property
    def calling(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Leave:
    """When one request's client leaves (the first rule to fire): no first
    token `patience_s` after it was sent, `read_tokens` answer events read,
    or a tool call begun (`on_tool_call`)."""

    patience_s: float | None = None
    read_tokens: int | None = None
    on_tool_call: bool = False


class BodyBuilder(Protocol):
    """(prompt tokens, max tokens, request number, prompt block ids) -> (body,
    the max_tokens it asks for, None when it asks none); cheap: byte splicing.
    The asked max_tokens (a prompt set's line may set its own) bounds a stream
    (engine.answer). Block ids come from a trace with prefix structure
    (mooncake): the prompt is made of those blocks."""

    def __call__(self, prompt_tokens: int | None, max_tokens: int | None, seq: int,
                 blocks: tuple[int, ...] = ()) -> tuple[bytes | None, int | None]: ...

Check = Callable[[int, ParsedResponse], str | None]
"""(status, parsed answer) -> why it is not sensible, or None."""


HistoryBuilder = Callable[[list[dict], ParsedResponse, dict], list[dict]]
"""(the messages a turn sent, its answer, the session's state) -> the
conversation so far in the dialect's shape; notes in the state what the next
turn needs (the calls to answer, the Responses API's response id)."""

TurnBuilder = Callable[[list[dict], int | None, int | None, int, dict],
                      tuple[bytes, int | None, list[dict], bool]]
"""A session's next turn: (the conversation so far, prompt tokens of the new
user message, max tokens, request number, the session's own state for the
builder) -> (body, asked max_tokens, the
messages it sent: the conversation so far and the new user message, whether
it is the last: a dataset's conversation has no more user turns)."""


@dataclass(frozen=True, slots=True)
class GrpcCall:
    """A request carried by gRPC (engine.grpc_client) instead of HTTP: the
    body is the serialised request message, each answer message is fed to
    the receiver as one body chunk (a stream parser sees one message per
    feed; a parser whose `final` turns true ends the stream there)."""

    address: str  # host:port
    method: str  # /package.Service/Method
    stream: bool  # a server stream (ModelStreamInfer); else unary
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A scenario made ready before the run; the hot path only splices bytes."""

    method: str
    path: str
    headers: dict[str, str]
    build_body: BodyBuilder
    # (keep the text: a session's history needs it) -> parser; None: not streamed
    new_stream_parser: Callable[[bool], StreamParser] | None
    parse_body: Callable[[bytes], ParsedResponse]
    check: Check | None = None  # None: any 2xx is success
    ok_status: frozenset[int] | None = None  # None: 2xx
    build_turn: TurnBuilder | None = None  # chat sessions
    next_history: HistoryBuilder | None = None  # with build_turn
    # In a session, a turn that ends in tool calls is answered with their
    # results (at most max_tool_rounds in a row), each after a tool latency
    # drawn uniformly from tool_latency (seconds).
    max_tool_rounds: int = 0
    tool_latency: tuple[float, float] = (0.0, 0.0)
    # Clients that leave: drawn per request, in the order they are sent
    # (None: this one stays); None: every client stays.
    leave: Callable[[], Leave | None] | None = None
    # A client that left comes back: (seconds until it does, drawn per retry;
    # the most times), or None.
    retry: tuple[Callable[[], float], int] | None = None
    # The body holds the whole prompt (not a continuation by
    # previous_response_id): the expected prefix-cache hits can be modelled.
    whole_prompt: bool = True
    # The prompt is exactly the asked prompt_tokens long (generated, no prefix
    # pool, no prompt set): the server's count can be compared with it.
    prompt_is_asked: bool = False
    grpc: GrpcCall | None = None  # None: HTTP
    # (its own body) -> (the items it sends, the results it asks for): rerank
    # sends N documents and asks a score for each, or the best top_n; an
    # answer with another number is a check failure.
    items_in: Callable[[bytes], tuple[int, int]] | None = None
    # What the requests' images and audio were, as built so far (counts,
    # sizes, formats, hashes: never the media); None: no media.
    describe_media: Callable[[], dict[str, Any]] | None = None
