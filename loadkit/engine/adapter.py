"""The interface the engine needs from a protocol adapter (the engine owns it).

`protocols/` implements it: each adapter turns a scenario into a
:class:`PreparedRequest` and parses answers into :class:`ParsedResponse`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class ProtocolError(Exception):
    """The server's answer broke the protocol (bad JSON, bad SSE, ...).

    Raised by parsers and caught by the engine, which records it as the
    `protocol` error kind; it never escapes a run.
    """


@dataclass(slots=True)
class ParsedResponse:
    """What a finished response told us about its output tokens."""

    output_tokens: int | None = None
    token_source: str = "none"  # "usage" | "chunks" | "none"


class StreamParser(Protocol):
    """Fed raw bytes as they arrive; returns how many token events they held."""

    def feed(self, data: bytes) -> int: ...

    def finish(self) -> ParsedResponse: ...


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A scenario turned into bytes once, before the run; the hot path only sends."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    stream: bool
    new_stream_parser: Callable[[], StreamParser] | None
    parse_body: Callable[[bytes], ParsedResponse]
