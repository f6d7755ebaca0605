"""The engine's side of one response, fed by whichever transport carries it.

A transport calls `status(code, t)` once, then `body(chunk, t)` for each read
(`t`: when those bytes were read), while `wants_body` holds; the engine then
calls `finish(end)`. Keeping this out of the transports means the status
rules, the size cap, the stream's token cap, SSE parsing and checks are
written once.
"""

from __future__ import annotations

import asyncio

from loadkit.engine.adapter import (
    Leave,
    ParsedResponse,
    PreparedRequest,
    ProtocolError,
    StreamParser,
)
from loadkit.errors import ErrorKind
from loadkit.record.recorder import RequestRecord

ERROR_BODY_BYTES = 300  # enough of an error body to say why, never the whole of it
STREAM_CUT = "stream cut after"  # how the message of a stream cut at its cap begins


def stream_token_cap(max_tokens: int) -> int:
    """The most token events a stream may send for `max_tokens`: generous (a
    server may split a token over chunks), but a stream that runs on and on is
    cut, so it can neither hold the run open nor grow its memory."""
    return 4 * max_tokens + 16


class ResponseTooLarge(Exception):
    pass


class Abandoned(Exception):
    """The client leaves (a rule of Leave fired): the connection closes now."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class Answer:
    __slots__ = ("req", "rec", "cap", "size", "code", "ok", "parts", "parser", "wants_body",
                 "last", "asked", "token_cap", "parsed", "leave", "patience")

    def __init__(self, req: PreparedRequest, rec: RequestRecord, cap: int,
                 asked: int | None = None, keep_text: bool = False,
                 leave: Leave | None = None) -> None:
        """`asked`: the max_tokens the request asked for; it caps a stream.
        `keep_text`: a session turn's answer is the next turn's history.
        `leave`: when this request's client leaves (None: it stays)."""
        self.req, self.rec, self.cap, self.asked = req, rec, cap, asked
        self.leave = leave
        # The patience timer (asyncio.timeout), disarmed by the first token.
        self.patience: asyncio.Timeout | None = None
        self.size = self.code = self.last = 0
        self.ok = self.wants_body = True
        self.parts: list[bytes] = []
        self.parser: StreamParser | None = None
        self.token_cap: int | None = None
        self.parsed: ParsedResponse | None = None  # once finished (a session's next turn)
        if req.new_stream_parser is not None:
            self.parser = req.new_stream_parser(keep_text)
            rec.events = []
            if asked is not None and asked >= 0:
                self.token_cap = stream_token_cap(asked)

    @property
    def ended(self) -> bool:
        """The stream said its end marker ([DONE], message_stop...): the answer
        is whole, whatever the connection still holds."""
        return self.parser is not None and self.parser.ended and self.ok

    def freed(self, t: int) -> None:
        """A connection came free for it at `t`, after a wait (the pool's cap)."""
        self.rec.freed = t

    def status(self, code: int, t: int) -> None:
        self.code, self.last = code, t
        ok = self.req.ok_status
        self.ok = code in ok if ok else 200 <= code < 300

    def body(self, data: bytes, t: int) -> None:
        if self.parser is not None and self.parser.ended and self.ok:
            # Bytes after the stream's end marker are no part of the answer,
            # which ended with it: another event stops the reading (the
            # connection goes with it); a blank line is let by.
            if data.strip():
                self.wants_body = False
            return
        self.last = t
        self.size += len(data)
        if not self.ok:
            self.parts.append(data)
            self.wants_body = self.size < ERROR_BODY_BYTES
        elif self.size > self.cap:
            # Content-Length cannot be trusted: a small gzip body can inflate 1000x.
            raise ResponseTooLarge(f"response exceeds {self.cap} bytes")
        elif self.parser is not None:
            if n := self.parser.feed(data):
                rec = self.rec
                if rec.first is None:
                    rec.first = t
                    # In time, the client stays. A timer that has just fired
                    # (its cancel not yet delivered) cannot be changed: the
                    # client has left, and its cut ends this exchange.
                    if self.patience is not None and not self.patience.expired():
                        self.patience.reschedule(None)
                events: list[int] = rec.events  # type: ignore[assignment]  # set with the parser
                events.extend((t,) * n)
                if self.token_cap is not None and len(events) > self.token_cap:
                    raise ProtocolError(f"{STREAM_CUT} {len(events):,} tokens: more than "
                                        f"4 × max_tokens + 16 (max_tokens {self.asked:,})")
            if (leave := self.leave) is not None:
                if leave.read_tokens is not None and self.parser.answers >= leave.read_tokens:
                    # A client reads events one by one: those after the N-th, in
                    # the same read, arrived but it never reads them.
                    received = len(self.rec.events or ())
                    self.rec.read = received - (self.parser.answers - leave.read_tokens)
                    raise Abandoned("read_tokens")
                if leave.on_tool_call and self.parser.calling:
                    raise Abandoned("tool_call")
        else:
            self.parts.append(data)

    def finish(self, end: int) -> None:
        """Judge the complete answer; may raise ProtocolError (broken body)."""
        rec = self.rec
        rec.end = end
        if not self.ok:
            text = b"".join(self.parts)[:ERROR_BODY_BYTES].decode("utf-8", "replace")
            rec.error, rec.message = status_error(self.code, self.req.ok_status, text)
            return
        parsed = self.parsed = (self.parser.finish() if self.parser is not None
                                else self.req.parse_body(b"".join(self.parts)))
        rec.output_tokens = parsed.output_tokens
        rec.token_source = parsed.token_source
        rec.event_tokens, rec.event_source = parsed.event_tokens, parsed.event_source
        rec.first_share = parsed.first_share
        rec.text = parsed.text  # kept only where asked (checks, sessions' history)
        rec.prompt_tokens, rec.cached_tokens = parsed.prompt_tokens, parsed.cached_tokens
        rec.finish_reason, rec.no_done = parsed.finish_reason, parsed.no_done
        rec.answer_event, rec.reasoning_tokens = parsed.answer_event, parsed.reasoning_tokens
        if parsed.tool_calls:  # the calls were complete with their last fragment
            events = rec.events
            rec.tool_done = events[parsed.tool_event] if events and parsed.tool_event is not None \
                and parsed.tool_event < len(events) else end
        if self.req.items_in is not None and rec.body is not None:
            rec.items, want = self.req.items_in(rec.body)
            beyond = parsed.item_top is not None and parsed.item_top >= rec.items
            if parsed.items != want or parsed.item_problem or beyond:
                rec.error, rec.message = ErrorKind.CHECK_FAILED, parsed.item_problem or (
                    f"document index {parsed.item_top} of the {rec.items} sent" if beyond
                    else f"{parsed.items} scores for the {want} asked")
                return
        if self.req.check is not None and (why := self.req.check(self.code, parsed)) is not None:
            rec.error, rec.message = ErrorKind.CHECK_FAILED, why


def status_error(status: int, expected: frozenset[int] | None,
                 text: str) -> tuple[ErrorKind, str]:
    if status >= 500:
        return ErrorKind.HTTP_5XX, f"HTTP {status}: {text}"
    if status >= 400:
        return ErrorKind.HTTP_4XX, f"HTTP {status}: {text}"
    if expected:
        return ErrorKind.CHECK_FAILED, f"HTTP {status}, expected {sorted(expected)}: {text}"
    hint = " (redirect not followed; see client.follow_redirects)" if 300 <= status < 400 else ""
    return ErrorKind.PROTOCOL, f"HTTP {status}{hint}: {text}"
