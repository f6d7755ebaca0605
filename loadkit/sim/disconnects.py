"""Clients that leave: the server's truth about every hang-up of an inference
request (chat, completions, Responses, Messages; streamed or not).

A client that closes its connection before its answer is complete (before
the first token, in the queue, mid-stream, or while a non-streamed answer is
being decoded) is *noticed* by the server when aiohttp sees the connection
close: its ``handler_cancellation`` cancels the handler at once, and a write
to the closed connection fails; whichever comes first is the notice.  A
close by the server itself (a ``reset`` fault, a ``replica_death``) or a
shutdown is no hang-up.

Honoured (the default): the request stops generating the moment the server
notices, wherever it is (a streamed token's wait, a non-streamed answer's
sleep of up to 16 decode steps, the queue, the prefill: each is one
cancellable sleep, so the notice is never a decode step late), and its batch
seat and KV-cache go back at once; the step in progress is dropped, so no
token is generated after the notice.  ``vllm:generation_tokens_total``
counts the tokens it sent.

Ignored (a request that arrives while an ``ignore_disconnect`` fault is on,
on its replica): a *zombie*.  Its generation runs as a task of its own that
the handler awaits (shielded), so cancelling the handler leaves it running:
it keeps its place in the queue or its seat and KV-cache, decodes to its max
tokens at the same pace (the batch it is in stays that much bigger), writes
nothing more to the closed connection, and counts as answered in full: all
its tokens in ``vllm:generation_tokens_total`` as if sent, its phases in the
histograms.  It ends early only where any request would (its replica dies, a
``reset`` or ``error_in_stream`` fault ends it).

On ``/metrics`` (``metrics.py``)::

    loadkit_sim_disconnects_total               counter: hang-ups noticed
    vllm:request_success_total{finished_reason="abort"}
                                                counter: hang-ups honoured (as vLLM counts
                                                aborts), when the seat went back
    loadkit_sim_tokens_after_disconnect_total   counter: tokens generated after the
                                                notice (0 when honoured; a zombie's
                                                count is added when it ends)

For tests, a bounded log of the last :data:`LOG_SIZE` hang-ups, oldest
first: ``app[SIMULATOR_KEY].context.disconnects`` (also
``app[SIMULATOR_KEY].disconnects``), a ``deque`` of :class:`Disconnect`
records, loop-clock seconds (``context.origin`` is the fault schedule's 0)::

    arrival   when the request arrived (its handler started, after any overhead)
    noticed   when the server noticed the close
    sent      tokens written to the client before it (0 for a non-streamed answer)
    after     tokens generated after it (0 when honoured; a zombie's, once it ends)
    ended     when its generation stopped and its seat went back (honoured: noticed;
              a zombie: the deadline of its last token; None while it runs)
    zombie    whether the request ignored the hang-up (ignore_disconnect)
    replica   the replica it went to (None: it left before it had one)
    dialect   chat, completions, responses or messages
    stream    whether the answer was streamed

A record is appended when the server notices; a zombie's ``after`` and
``ended`` are filled in when its generation stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from .injector import Injector
from .metrics import Metrics

LOG_SIZE = 10_000
_log = logging.getLogger(__name__)


@dataclass(slots=True)
class Disconnect:
    """One client that hung up (see the module's docstring); loop times."""

    arrival: float
    noticed: float
    sent: int
    after: int = 0
    ended: float | None = None
    zombie: bool = False
    replica: int | None = None
    dialect: str = ""
    stream: bool = False


class Track:
    """One inference request's side of a hang-up: what it has sent, whether
    it ignores one (``zombie``: None until its replica is known), and its
    :class:`Disconnect` once the server noticed."""

    __slots__ = ("_injector", "_log", "_metrics", "after", "arrival", "dialect", "record",
                 "replica", "sent", "stream", "zombie")

    def __init__(self, metrics: Metrics, injector: Injector, log: deque[Disconnect],
                 dialect: str, arrival: float) -> None:
        self._metrics, self._injector, self._log = metrics, injector, log
        self.dialect = dialect
        self.arrival = arrival
        self.stream = False
        self.replica: int | None = None
        self.sent = 0  # tokens written to the client
        self.after = 0  # a zombie's tokens after the notice, set when it ends
        self.zombie: bool | None = False
        self.record: Disconnect | None = None

    @property
    def gone(self) -> bool:
        """The server noticed that the client left."""
        return self.record is not None

    def leave(self, now: float) -> None:
        """The server noticed the client's close at loop time ``now`` (once)."""
        if self.record is not None:
            return
        self.record = rec = Disconnect(self.arrival, now, self.sent, replica=self.replica,
                                       dialect=self.dialect, stream=self.stream)
        self._metrics.disconnects += 1
        self._log.append(rec)
        if self.zombie is not None:
            self._settle(rec, self.zombie)

    def admitted(self, replica: int | None, zombie: bool | None) -> None:
        """The request went to ``replica`` (None: turned away); ``zombie``:
        whether it ignores a hang-up, where that was left undecided until now
        (else None)."""
        self.replica = replica
        if zombie is None:
            return
        self.zombie = zombie
        if self.record is not None:  # the client left before: settle it now
            self.record.replica = replica
            self._settle(self.record, zombie)

    def finish(self, at: float) -> None:
        """A zombie's generation stopped at loop time ``at``, ``after`` tokens
        after the notice."""
        rec = self.record
        if rec is None or not rec.zombie or rec.ended is not None:
            return
        rec.after, rec.ended = self.after, at
        self._metrics.tokens_after_disconnect += self.after

    def _settle(self, rec: Disconnect, zombie: bool) -> None:
        if zombie:
            rec.zombie = True
            self._injector.injected["ignore_disconnect"] += 1
        else:  # honoured: it stops as it is noticed
            rec.ended = rec.noticed
            self._metrics.aborted += 1


def forget(tasks: set[asyncio.Task[Any]], track: Track, task: asyncio.Task[Any]) -> None:
    """Done callback of a detached generation: drop it from ``tasks``; log an
    error that no handler awaited (its client was gone)."""
    tasks.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None and track.gone:
        _log.error("a generation whose client had left failed", exc_info=exc)
