"""The serving model: replicas, their batch seats and KV-cache, the waiting
queue, cold starts and replica death.

Each replica runs at most ``max_num_seqs`` sequences and holds
``kv_cache_tokens`` of KV-cache.  A request reserves prompt + max output
tokens for its whole life (no preemption), so a full cache, like a full
batch, makes new requests wait in that replica's queue: first come first
served, or lowest ``priority`` first (vLLM's convention), ties by arrival.
Requests go to the replica with the fewest outstanding requests among the
ready ones, round-robin among equals, as a least-request load balancer does.

Cold starts: every replica loads the model (``load_ms``) at start-up; with
``scale_to_zero_s`` the whole deployment unloads after that much idle time,
and the next request triggers the load again.  Requests that arrive during a
load wait for it in the queue (that wait is their queue time on
``/metrics``).  A replica that dies cuts its requests (their connections are
closed) and takes no new ones until it is revived, cold.  Every load that
takes time is counted (``loads``: start-up, wake, revival).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from collections.abc import Callable

from .config import SimConfig

READY, LOADING, COLD, DEAD = "ready", "loading", "cold", "dead"
_UTIL_TAU_S = 1.0  # averaging time of the simulated GPU utilisation


class ReplicaLost(Exception):
    """The replica holding this request died before it was served."""


class Ticket:
    """One request's place on a replica: waiting for a seat, then running."""

    __slots__ = ("admitted_at", "cut", "epoch", "future", "kv", "replica", "state")

    def __init__(self, replica: Replica, kv: int, cut: Callable[[], None]) -> None:
        self.replica = replica
        self.epoch = replica.epoch  # a death bumps the replica's epoch
        self.kv = kv
        self.cut = cut  # closes the client's connection
        self.future: asyncio.Future[None] | None = None
        self.admitted_at = 0.0
        self.state = "waiting"  # -> "running" -> "done"


class Replica:
    """Seats, KV-cache and queue of one simulated GPU server."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.state = READY  # READY, LOADING or DEAD; COLD is derived (see Deployment)
        self.epoch = 0
        self.running = 0
        self.waiting = 0
        self.kv_used = 0
        self.queue: list[tuple[int, int, Ticket]] = []  # (priority, arrival, ticket)
        self.tickets: set[Ticket] = set()  # running ones, to cut on death
        self.load_waiters: list[asyncio.Future[None]] = []
        self._busy = False
        self._util = 0.0
        self._util_t = 0.0

    def utilization(self, now: float) -> float:
        """Busy fraction, exponentially averaged over about a second."""
        decay = math.exp(-(now - self._util_t) / _UTIL_TAU_S)
        return self._busy + (self._util - self._busy) * decay

    def _mark_busy(self, busy: bool, now: float) -> None:
        if busy != self._busy:
            self._util, self._util_t, self._busy = self.utilization(now), now, busy


class Deployment:
    """All replicas behind the simulator's one endpoint."""

    def __init__(self, config: SimConfig) -> None:
        self.replicas = [Replica(i) for i in range(config.replicas)]
        self._max_seqs = config.max_num_seqs
        self._kv_cap = config.kv_cache_tokens
        self._load_s = config.load_ms / 1000.0
        self._idle_s = config.scale_to_zero_s
        self._order = itertools.count()
        self._rr = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_system = 0  # requests inside, in any state (also embeddings)
        self.idle_since = 0.0
        self.extra_running = 0  # embeddings being computed (no batch seat)
        self.loads = 0  # model loads started by a replica (load_ms > 0)

    def start(self, loop: asyncio.AbstractEventLoop, now: float) -> None:
        """Begin serving at loop time ``now``: load the model if it takes time."""
        self._loop = loop
        self.idle_since = now
        for rep in self.replicas:
            self._load(rep, now)

    # -- request lifecycle -----------------------------------------------------------

    def enter(self, now: float) -> None:
        """A request arrived: wake a deployment that scaled to zero."""
        if self.is_cold(now):
            for rep in self.replicas:
                if rep.state != DEAD:
                    self._load(rep, now)
        self.in_system += 1

    def leave(self, now: float) -> None:
        self.in_system -= 1
        if self.in_system == 0:
            self.idle_since = now

    def route(self) -> Replica | None:
        """The replica for a new request, or None when every one is dead."""
        n = len(self.replicas)
        best, best_key = None, None
        for rep in self.replicas:
            if rep.state == DEAD:
                continue
            key = (rep.state != READY, rep.running + rep.waiting, (rep.index - self._rr) % n)
            if best_key is None or key < best_key:
                best, best_key = rep, key
        if best is not None:
            self._rr = (best.index + 1) % n
        return best

    def fits_at_all(self, kv: int) -> bool:
        return not self._kv_cap or kv <= self._kv_cap

    async def acquire(self, rep: Replica, kv: int, priority: int, now: float,
                      cut: Callable[[], None]) -> Ticket:
        """A running seat on ``rep``; waits in its queue when there is none.

        Raises :class:`ReplicaLost` if the replica dies meanwhile."""
        ticket = Ticket(rep, kv, cut)
        if rep.state == READY and not rep.queue and self._fits(rep, kv):
            self._admit(ticket, now)
            return ticket
        assert self._loop is not None, "Deployment.start() was not called"
        ticket.future = self._loop.create_future()
        heapq.heappush(rep.queue, (priority, next(self._order), ticket))
        rep.waiting += 1
        try:
            await ticket.future
        except asyncio.CancelledError:
            if ticket.state == "waiting" and ticket.epoch == rep.epoch:
                ticket.state = "done"  # dropped from the heap lazily
                rep.waiting -= 1
            elif ticket.state == "running":
                self.release(ticket, self._loop.time())
            raise
        return ticket

    def release(self, ticket: Ticket, now: float) -> None:
        """Give the seat and KV-cache back, and seat whoever can go next."""
        rep = ticket.replica
        was_running, ticket.state = ticket.state == "running", "done"
        if not was_running or ticket.epoch != rep.epoch:
            return  # the replica died (and maybe came back) since: nothing to return
        rep.running -= 1
        rep.kv_used -= ticket.kv
        rep.tickets.discard(ticket)
        rep._mark_busy(rep.running > 0, now)
        self._grant(rep, now)

    async def until_loaded(self, rep: Replica) -> None:
        """Wait while ``rep`` loads the model (for requests that need no seat)."""
        if rep.state == LOADING:
            assert self._loop is not None
            fut = self._loop.create_future()
            rep.load_waiters.append(fut)
            await fut

    # -- faults ----------------------------------------------------------------------

    def kill(self, index: int, now: float) -> None:
        """The replica dies: cut every request on it, seated or queued."""
        rep = self.replicas[index]
        if rep.state == DEAD:
            return
        rep.state, rep.epoch = DEAD, rep.epoch + 1
        for ticket in list(rep.tickets):
            ticket.state = "done"
            ticket.cut()
        for _, _, ticket in rep.queue:
            if ticket.state == "waiting" and ticket.future and not ticket.future.done():
                ticket.state = "done"
                ticket.future.set_exception(ReplicaLost())
        for fut in rep.load_waiters:
            if not fut.done():
                fut.set_exception(ReplicaLost())
        rep.queue.clear()
        rep.tickets.clear()
        rep.load_waiters.clear()
        rep.running = rep.waiting = rep.kv_used = 0
        rep._mark_busy(False, now)

    def revive(self, index: int, now: float) -> None:
        """A dead replica comes back and loads the model again."""
        rep = self.replicas[index]
        if rep.state == DEAD:
            rep.state = READY
            self._load(rep, now)

    # -- observation -----------------------------------------------------------------

    def is_cold(self, now: float) -> bool:
        """Scaled to zero: idle for scale_to_zero_s, nothing loading."""
        return (self._idle_s > 0 and self.in_system == 0
                and now - self.idle_since >= self._idle_s
                and not any(r.state == LOADING for r in self.replicas))

    def states(self, now: float) -> list[str]:
        cold = self.is_cold(now)
        return [COLD if cold and r.state == READY else r.state for r in self.replicas]

    @property
    def running(self) -> int:
        return sum(r.running for r in self.replicas) + self.extra_running

    @property
    def waiting(self) -> int:
        return sum(r.waiting + len(r.load_waiters) for r in self.replicas)

    def kv_usage(self) -> float:
        """Fraction of the live replicas' KV-cache reserved (0 when unlimited)."""
        live = [r for r in self.replicas if r.state != DEAD]
        if not self._kv_cap or not live:
            return 0.0
        return sum(r.kv_used for r in live) / (self._kv_cap * len(live))

    # -- private helpers -------------------------------------------------------------

    def _fits(self, rep: Replica, kv: int) -> bool:
        return ((not self._max_seqs or rep.running < self._max_seqs)
                and (not self._kv_cap or rep.kv_used + kv <= self._kv_cap))

    def _admit(self, ticket: Ticket, now: float) -> None:
        rep = ticket.replica
        ticket.state, ticket.admitted_at = "running", now
        rep.running += 1
        rep.kv_used += ticket.kv
        rep.tickets.add(ticket)
        rep._mark_busy(True, now)

    def _grant(self, rep: Replica, now: float) -> None:
        while rep.queue and rep.state == READY:
            ticket = rep.queue[0][2]
            assert ticket.future is not None
            if ticket.state != "waiting" or ticket.future.done():  # cancelled while queued
                heapq.heappop(rep.queue)
                if ticket.state == "waiting":  # its handler has not run its except yet
                    ticket.state = "done"
                    rep.waiting -= 1
                continue
            if not self._fits(rep, ticket.kv):
                break  # head-of-line: later requests wait behind it
            heapq.heappop(rep.queue)
            rep.waiting -= 1
            self._admit(ticket, now)
            ticket.future.set_result(None)

    def _load(self, rep: Replica, now: float) -> None:
        if self._load_s <= 0 or self._loop is None:
            return
        rep.state = LOADING
        self.loads += 1
        self._loop.call_at(now + self._load_s, self._loaded, rep, rep.epoch)

    def _loaded(self, rep: Replica, epoch: int) -> None:
        if rep.state != LOADING or rep.epoch != epoch:
            return  # died while loading
        assert self._loop is not None
        now = self._loop.time()
        rep.state = READY
        self.idle_since = max(self.idle_since, now)  # idleness counts from readiness
        for fut in rep.load_waiters:
            if not fut.done():
                fut.set_result(None)
        rep.load_waiters.clear()
        self._grant(rep, now)
