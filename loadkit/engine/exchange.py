"""One request on the wire: its body built, sent, read and timed, every
failure written into its record (a failure is a measurement, never raised),
and a client that leaves leaving at its rule's instant. A session's turn is
a request too (`Turn`: what the session's loop in runner.py hands over and
gets back)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from loadkit.engine.adapter import IncompleteAnswer, ParsedResponse, ProtocolError
from loadkit.engine.answer import Abandoned, Answer
from loadkit.engine.client import classify
from loadkit.engine.transports import Transport
from loadkit.errors import ErrorKind
from loadkit.record.recorder import RequestRecord

if TYPE_CHECKING:
    from loadkit.engine.runner import Plan

now_ns = time.monotonic_ns


@dataclass(slots=True)
class Turn:
    """One turn of a session, as `exchange` builds it."""

    index: int
    history: list[dict]  # the conversation before this turn
    start: int  # the session's first turn's intended time
    last: bool  # the session's planned last turn
    sent: list[dict] = field(default_factory=list)  # the messages it sent (set by exchange)
    state: dict = field(default_factory=dict)  # the session's, for its turn builder
    tools_left: int = 0  # tool rounds this user turn may still take
    answer: ParsedResponse | None = None  # set by exchange

    @property
    def calls_tools(self) -> bool:
        """The answer called tools and the client will send their results."""
        return self.answer is not None and bool(self.answer.tool_calls) and self.tools_left > 0

    @property
    def closes(self) -> bool:
        """The session ends with this turn's answer: the planned last turn
        (unless a tool round follows), or an answer that called tools when no
        round is left."""
        called = self.answer is not None and bool(self.answer.tool_calls)
        return (self.last and not self.calls_tools) or (called and self.tools_left <= 0)



async def sleep_until(at: int) -> None:
    """Until monotonic `at` (ns), never earlier: a uvloop timer counts whole
    milliseconds from a cached loop clock and may fire up to 1 ms early."""
    while (delay := at - now_ns()) > 0:
        await asyncio.sleep(delay / 1e9 if delay > 1_000_000 else 0)


async def exchange(plan: Plan, transport: Transport, tenant: int, scenario: int,
                   prompt_tokens: int | None, max_tokens: int | None, seq: int,
                   rec: RequestRecord, blocks: tuple[int, ...] = (),
                   turn: Turn | None = None, may_leave: bool = True,
                   again: bytes | None = None) -> int:
    """One request on the wire, its timings and any failure written into `rec`
    (never raised: a failure is a measurement); returns the HTTP status (0: none).
    A client that leaves (`abandon:`, not in the probe: `may_leave`) closes
    the connection at the instant its rule fires; `rec.abandoned` says which."""
    req = plan.requests[tenant][scenario]
    answer: Answer | None = None
    try:
        body: bytes | None
        if req.prompt_is_asked and turn is None:  # not a prompt set, prefix or history
            rec.prompt_asked = prompt_tokens
        if again is not None:  # a retry: the very bytes its client sent before
            body, asked = again, max_tokens
        elif turn is not None and req.build_turn is not None:
            body, asked, turn.sent, ends = req.build_turn(turn.history, prompt_tokens,
                                                          max_tokens, seq, turn.state)
            turn.last = turn.last or ends
        else:
            body, asked = req.build_body(prompt_tokens, max_tokens, seq, blocks)
        rec.body = body if req.whole_prompt else None
        rec.sent_bytes = len(body) if body else 0
        leave = req.leave() if req.leave is not None and may_leave else None
        answer = Answer(req, rec, plan.client.max_response_bytes, asked, turn is not None,
                        leave)
        if leave is not None and leave.patience_s is not None:
            # Counted from when it was sent, disarmed by the first token (Answer).
            async with asyncio.timeout(leave.patience_s - (now_ns() - rec.sent) / 1e9) as wait:
                answer.patience = wait
                end = await transport.send(tenant, scenario, body, answer)
        else:
            end = await transport.send(tenant, scenario, body, answer)
        answer.finish(end)
        if turn is not None:
            turn.answer = answer.parsed
    except Abandoned as exc:
        rec.abandoned = exc.rule
    except Exception as exc:  # noqa: BLE001 - every failure is a measurement
        if answer is not None and answer.patience is not None and answer.patience.expired():
            rec.abandoned = "patience"  # whatever the cut raised, its client had left
        elif isinstance(exc, IncompleteAnswer):
            rec.error, rec.message = ErrorKind.INCOMPLETE, str(exc)[:300]
        elif isinstance(exc, ProtocolError):
            rec.error, rec.message = ErrorKind.PROTOCOL, str(exc)[:300]
        else:
            rec.error, rec.message = classify(exc)
    rec.end = rec.end or now_ns()
    for secret in plan.secrets if rec.message else ():  # a server may echo a key back
        rec.message = rec.message.replace(secret, "***")
    return answer.code if answer is not None else 0
