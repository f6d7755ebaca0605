"""The open-loop engine: release each request at its intended time.

A dispatcher walks the seeded schedule and starts every request at its slot,
whether or not earlier ones have answered; latency is charged from the slot
(`intended`), so a stalled server cannot hide behind a polite client
(coordinated omission). An optional in-flight cap counts arrivals it cannot
start as `dropped`, never delaying them silently.

The end is bounded: after the schedule, requests still in flight get
`client.drain` to finish, then are cancelled and recorded as failures of kind
`unfinished` (they never answered, so they count like any error in error rate
and tails). A stop by an abort SLO or fail-fast (`halt`) cancels them at once,
recorded the same way: the verdict is already decided, and the survivors
alone would flatter the tails. An interrupt (`stop` set with no cause: Ctrl-C,
SIGTERM) cancels them unjudged; they are counted in `unfinished` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from loadkit.arrivals import ClosedLoop, Mix, Slot
from loadkit.arrivals.schedule import sample_tokens
from loadkit.engine.adapter import PreparedRequest
from loadkit.engine.alarm import Alarm, open_alarm
from loadkit.engine.exchange import Turn, exchange, sleep_until
from loadkit.engine.transports import Transport, open_transport
from loadkit.errors import ErrorKind
from loadkit.record.recorder import LATER, RETRY, Interval, RequestRecord
from loadkit.record.worker import RecorderThread
from loadkit.workload.models import Client
from loadkit.workload.scenarios import GenerationScenario

now_ns = time.monotonic_ns
SPIN_NS = 1_500_000  # yield, not sleep, this close to a slot after a long gap
LEAD_NS = 200_000  # woken this early by the alarm after a long gap (see _release)
NAP_NS = 250_000_000  # the longest sleep between looks at `stop`


@dataclass
class Progress:
    """A live view of the run for the console; read-only outside the engine."""

    total_s: float
    scheduled: int = 0
    finished: int = 0
    errors: int = 0
    dropped: int = 0
    in_flight: int = 0
    last: Interval | None = None


@dataclass
class Plan:
    """What the engine needs: where to send, what, and when."""

    base_url: str
    requests: list[list[PreparedRequest]]  # [tenant][scenario]
    scenario_names: list[str]
    tenant_names: list[str]
    phase_names: list[str]
    client: Client
    total_s: float
    interval_s: float
    closed: list[ClosedLoop] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # resolved ${VAR}s, kept out of messages
    mixes: dict[tuple[int, int], Mix] = field(default_factory=dict)  # closed loops' picks
    sessions: dict[int, GenerationScenario] = field(default_factory=dict)  # by scenario index


@dataclass
class Engine:
    plan: Plan
    recorder: RecorderThread  # takes requests and interval marks off the loop
    on_interval: Callable[[Progress], None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    progress: Progress = field(init=False)
    scheduled: Counter = field(default_factory=Counter)  # (phase, tenant)
    # Cancelled without a verdict (an interrupt): in no other count.
    unfinished: int = 0
    stop_cause: str | None = None  # set by halt(); None: an interrupt
    finish_cause: str | None = None  # set by finish(): the schedule ended early, drained
    seq_first: int = 1  # the first request number; a shard's: k + 1
    seq_step: int = 1  # a shard's: n

    def __post_init__(self) -> None:
        self.progress = Progress(total_s=self.plan.total_s)
        self._tasks: set[asyncio.Task] = set()
        # Request numbers (a prompt's unique start): shard k of n numbers its
        # requests k+1, k+1+n, ..., so no two workers send the same prompt.
        # Each request's number is taken by adding the step first: a shard
        # k of n numbers k + 1, k + 1 + n, ... as the one process numbers them.
        self._seq, self._seq_step = self.seq_first - self.seq_step, self.seq_step
        self.slots_sent = 0  # schedule slots dispatched (a session is one)
        self._cut: str | None = None  # why requests are being cancelled, when they count
        self._overdue = False  # the drain deadline passed with requests in flight
        self._finish_ns = 0  # when finish() ended the schedule
        self._loop: asyncio.AbstractEventLoop | None = None
        self._early: list[Callable[[], None]] = []  # stops from other threads before run()
        self._early_lock = threading.Lock()

    def finish_threadsafe(self, cause: str) -> None:
        """finish() from another thread (the recorder's: the verdict decided)."""
        self._threadsafe(lambda: self.finish(cause))

    def halt_threadsafe(self, cause: str) -> None:
        """halt() from another thread (the recorder's: fail-fast, abort SLOs);
        once the loop has closed the run is over, and there is nothing to stop."""
        self._threadsafe(lambda: self.halt(cause))

    def interrupt_threadsafe(self) -> None:
        """An interrupt (no cause) from another thread: in-flight requests
        are cancelled unjudged, as at a Ctrl-C."""
        self._threadsafe(self.interrupt)

    def interrupt(self) -> None:
        """Stop with no cause (Ctrl-C, SIGTERM): in-flight requests cancelled unjudged."""
        if not self._halted():
            self.stop_cause = self.finish_cause = None
        self.stop.set()

    def _threadsafe(self, call: Callable[[], None]) -> None:
        with self._early_lock:
            if self._loop is None:  # before run(): applied when it starts
                self._early.append(call)
                return
        with contextlib.suppress(RuntimeError):  # after it, no loop is open: nothing to stop
            self._loop.call_soon_threadsafe(call)

    def interval_closed(self, iv: Interval) -> None:
        """On the recorder's thread, after each rotation: the console's view."""
        self.progress.last = iv
        self.progress.in_flight = len(self._tasks)
        if self.on_interval:
            self.on_interval(self.progress)

    def halt(self, cause: str) -> None:
        """Stop the run for `cause` (an abort SLO, fail-fast): what is in
        flight is cancelled at once and counted as `unfinished` failures."""
        if not self._halted():  # the first cause stands; a halt ends a finish's drain
            self.stop_cause, self.finish_cause = cause, None
        self.stop.set()

    def finish(self, cause: str) -> None:
        """End the schedule now for `cause` (the verdict decided): nothing more is
        released, and what is in flight gets `client.drain` to answer, as at
        the schedule's end."""
        if not self.stop.is_set():
            self.finish_cause, self._finish_ns = cause, now_ns()
            self.stop.set()

    async def run(self, slots: Iterable[Slot]) -> None:
        """Send the whole schedule, wait for stragglers, close the last interval."""
        with self._early_lock:
            self._loop = asyncio.get_running_loop()
            for call in self._early:
                call()
        transport = open_transport(self.plan.base_url, self.plan.requests, self.plan.client)
        try:
            ticker = asyncio.create_task(self._tick())
            closed = [asyncio.create_task(self._closed_loop(transport, c))
                      for c in self.plan.closed]
            try:
                await self._dispatch(transport, slots)
                await self._drain(closed)  # closed loops end with their phase
            finally:
                ticker.cancel()
                self._cut = self._cut_reason()
                for t in [*closed, *self._tasks]:
                    t.cancel()
                await asyncio.gather(*closed, *self._tasks, return_exceptions=True)
        finally:
            await transport.close()
        self.recorder.rotate(now_ns())

    async def _dispatch(self, transport: Transport, slots: Iterable[Slot]) -> None:
        alarm = open_alarm(asyncio.get_running_loop())
        try:
            await self._release(transport, slots, alarm)
        finally:
            if alarm is not None:
                alarm.close()

    async def _release(self, transport: Transport, slots: Iterable[Slot],
                       alarm: Alarm | None) -> None:
        start = self.recorder.start_ns
        cap = self.plan.client.max_in_flight
        phases, tenants = self.plan.phase_names, self.plan.tenant_names
        sleep, stop = asyncio.sleep, self.stop
        overdue = 0
        for slot in slots:
            intended = start + int(slot.at * 1e9)
            if (delay := intended - now_ns()) <= 0:
                overdue += 1
                if overdue % 64 == 0:  # behind schedule: still let the loop breathe
                    await sleep(0)
            elif alarm is not None:
                # Woken by the alarm (a stop is seen within NAP_NS). After a
                # gap long enough to afford it, LEAD_NS early, then yield until
                # due: a wake from idle takes ~0.1-0.2 ms on a VM. At high rates
                # a spin would cost a loop turn per look (+6% CPU per request).
                wake = intended - (LEAD_NS if delay > 10 * LEAD_NS else 0)
                while (now := now_ns()) < wake and not stop.is_set():
                    await alarm.until(min(wake, now + NAP_NS))
                while intended > now_ns() and not stop.is_set():
                    await sleep(0)
            elif delay > 2 * SPIN_NS:
                # Event-loop timers fire up to ~1 ms late (uvloop counts in ms):
                # after a long gap, sleep to just short of the slot (a stop is
                # seen within NAP_NS), then yield until it is due. Short gaps
                # (high rates) only sleep: a spin there would burn the core.
                while (delay := intended - SPIN_NS - now_ns()) > 0 and not stop.is_set():
                    await sleep(min(delay, NAP_NS) / 1e9)
                while intended > now_ns() and not stop.is_set():
                    await sleep(0)
            else:
                await sleep(delay / 1e9)
            if stop.is_set():
                return
            phase = phases[slot.phase]
            self.scheduled[(phase, tenants[slot.tenant])] += 1
            self.progress.scheduled += 1
            self.slots_sent += 1
            if len(self._tasks) >= cap:
                self.recorder.drop(phase, self.plan.scenario_names[slot.scenario],
                                   tenants[slot.tenant])
                self.progress.dropped += 1
                continue
            self._seq += self._seq_step
            task = asyncio.create_task(
                self._session(transport, slot, phase, self._seq, intended)
                if slot.scenario in self.plan.sessions or slot.script else
                self._request(transport, slot.tenant, slot.scenario, phase,
                              slot.prompt_tokens, slot.max_tokens, self._seq, intended,
                              slot.blocks))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _closed_loop(self, transport: Transport, c: ClosedLoop) -> None:
        """`concurrency` users, each sending when its previous answer came back.

        intended = sent: a closed loop has no schedule to be late against, so
        its latency is uncorrected (the run is reported as closed-loop)."""
        start = self.recorder.start_ns
        await asyncio.sleep(max(0.0, (start + int(c.start * 1e9) - now_ns()) / 1e9))
        end = start + int(c.end * 1e9)
        mix = self.plan.mixes[(c.tenant, c.phase)]
        phase, tenant = self.plan.phase_names[c.phase], self.plan.tenant_names[c.tenant]

        async def user() -> None:
            while now_ns() < end and not self.stop.is_set():
                scenario, prompt, output = mix.pick()
                self.scheduled[(phase, tenant)] += 1
                self.progress.scheduled += 1
                self._seq += self._seq_step
                await self._send(transport, c.tenant, scenario, phase, prompt, output,
                                 self._seq, None)
                if c.spec.think_time and not self.stop.is_set():
                    await asyncio.sleep(c.spec.think_time)

        await asyncio.gather(*(user() for _ in range(c.spec.concurrency)))

    async def _drain(self, closed: list[asyncio.Task]) -> None:
        """Let in-flight requests (and closed loops) finish, until `client.drain`
        after the schedule's end or a stop.

        Whatever is still running afterwards is cancelled (`run`); nothing
        already measured is lost."""
        drain_ns = int(self.plan.client.drain * 1e9)
        end = self.recorder.start_ns + int(self.plan.total_s * 1e9)
        deadline = max(end, now_ns()) + drain_ns  # from now when the dispatcher ran late

        def busy() -> bool:
            return bool(self._tasks) or not all(c.done() for c in closed)

        # Polling, not asyncio.wait(): that adds a callback to every task per call.
        while busy() and not self._halted():
            if self.finish_cause is not None:  # the schedule ended when it finished
                deadline = min(deadline, self._finish_ns + drain_ns)
            if (left := deadline - now_ns()) <= 0:
                self._overdue = True
                return
            await asyncio.sleep(min(0.02, left / 1e9))

    def _halted(self) -> bool:
        """Stopped by halt() or an interrupt: what is in flight is not waited for."""
        return self.stop.is_set() and self.finish_cause is None

    def _cut_reason(self) -> str | None:
        """What a request cancelled now is recorded as; None: not recorded."""
        if self._halted():
            return (f"in flight when {self.stop_cause} stopped the run; cancelled at once"
                    if self.stop_cause else None)
        if self._overdue:
            ended = "the run was finished early" if self.finish_cause else "the schedule ended"
            return (f"still in flight {self.plan.client.drain:g} s after {ended} "
                    "(client.drain); cancelled")
        return None  # an error of the engine's own: nothing to judge the target by

    async def _tick(self) -> None:
        """Rotate the recorder's interval on a fixed grid from the start."""
        step = int(self.plan.interval_s * 1e9)
        k = 1
        while True:
            await asyncio.sleep(max(0.0, (self.recorder.start_ns + k * step - now_ns()) / 1e9))
            self.recorder.rotate(now_ns())  # the recorder's thread does the work
            k += 1

    async def _request(self, transport: Transport, tenant: int, scenario: int, phase: str,
                       prompt_tokens: int | None, max_tokens: int | None, seq: int,
                       intended: int, blocks: tuple[int, ...]) -> None:
        """One open-loop request, and, when its client left and comes back
        (`abandon.retry`), the same bytes again: each retry a new arrival at
        its own time, scenario `<name>:retry`."""
        rec = await self._send(transport, tenant, scenario, phase, prompt_tokens, max_tokens,
                               seq, intended, blocks)
        retry = self.plan.requests[tenant][scenario].retry
        if retry is None:
            return
        wait, most = retry
        for _ in range(most):
            if not rec.abandoned or rec.body is None or self.stop.is_set():
                return
            at = rec.end + int(wait() * 1e9)
            await sleep_until(at)
            if self.stop.is_set():
                return
            self.scheduled[(phase, self.plan.tenant_names[tenant])] += 1
            self.progress.scheduled += 1
            rec = await self._send(transport, tenant, scenario, phase, prompt_tokens,
                                   max_tokens, seq, at, again=rec.body)

    async def _send(self, transport: Transport, tenant: int, scenario: int,
                    phase: str, prompt_tokens: int | None, max_tokens: int | None, seq: int,
                    intended: int | None, blocks: tuple[int, ...] = (),
                    turn: Turn | None = None, again: bytes | None = None) -> RequestRecord:
        """One request; `intended` None: a closed loop's, sent the moment it is due;
        `again`: a retry's body, sent as it was the first time."""
        sent = now_ns()
        name = self.plan.scenario_names[scenario] + (RETRY if again is not None else "")
        # A uvloop timer rounds to whole ms and may wake a fraction of one early:
        # a request sent before its slot is charged from when it went out.
        rec = RequestRecord(self.plan.tenant_names[tenant], name + LATER if turn and turn.index
                            else name, phase, sent if intended is None else min(intended, sent),
                            sent)
        if turn is not None:
            rec.turn = turn.index
        try:
            await exchange(self.plan, transport, tenant, scenario, prompt_tokens, max_tokens,
                           seq, rec, blocks, turn, again=again)
        except asyncio.CancelledError:
            if self._cut is None:
                self.unfinished += 1
            else:  # it never answered: a failure, slower than any threshold
                rec.error, rec.message, rec.end = ErrorKind.UNFINISHED, self._cut, now_ns()
                if turn is not None:
                    rec.session_start = turn.start
                self.recorder.record(rec)
                self.progress.errors += 1
            raise
        if turn is not None and (rec.error is not None or rec.abandoned or turn.closes):
            rec.session_start = turn.start  # this turn closes the session
        self.recorder.record(rec)
        self.progress.finished += 1
        if rec.error is not None:
            self.progress.errors += 1
        return rec

    async def _session(self, transport: Transport, slot: Slot, phase: str, seq: int,
                       intended: int) -> None:
        """A conversation: its first turn at its slot, each later one think time
        after the previous answer, or at its trace offset but never before the
        previous answer (the open loop's arrival is the session's; a turn's
        latency counts from when it was due), with the history as it
        happened. A failed turn ends it."""
        spec = self.plan.sessions.get(slot.scenario)
        req = self.plan.requests[slot.tenant][slot.scenario]
        rng = random.Random(f"{self.plan.tenant_names[slot.tenant]}:{slot.scenario}:{seq}")
        history: list[dict] = []
        state: dict = {}  # the turn builder's, kept across this session's turns
        prompt, output, at = slot.prompt_tokens, slot.max_tokens, intended
        tenant = self.plan.tenant_names[slot.tenant]
        asked, rounds, index = 0, 0, 0  # user turns asked, tool rounds in a row, requests
        while True:
            if index:
                self.scheduled[(phase, tenant)] += 1
                self.progress.scheduled += 1
                self._seq += self._seq_step
                seq = self._seq
            turn = Turn(index, history, intended, asked == slot.turns - 1, state=state,
                        tools_left=req.max_tool_rounds - rounds)
            rec = await self._send(transport, slot.tenant, slot.scenario, phase, prompt, output,
                                   seq, at, turn=turn)
            index += 1
            if rec.error is not None or rec.abandoned or turn.closes:
                return
            if self.stop.is_set():
                return self._session_cut(slot, phase)
            assert turn.answer is not None and req.next_history is not None
            history = req.next_history(turn.sent, turn.answer, state)
            if turn.calls_tools:  # the client runs the tools, then answers with their results
                rounds += 1
                low, high = req.tool_latency
                at = rec.end + int((low if low == high else rng.uniform(low, high)) * 1e9)
                await self._until_turn(at, slot, phase)
                continue
            rounds, asked = 0, asked + 1
            if slot.script:  # a traced session: its next row's offset and lengths
                offset, row_prompt, row_output = slot.script[asked - 1]
                prompt = row_prompt or slot.prompt_tokens  # a row without lengths: the
                output = row_output or slot.max_tokens  # scenario's, as for the first turn
                at = max(intended + int(offset * 1e9), rec.end)
            else:
                assert spec is not None and spec.session is not None
                think = spec.session.think_time
                wait = think if isinstance(think, float) else rng.uniform(think.min, think.max)
                at = rec.end + int(wait * 1e9)
                prompt = sample_tokens(spec.prompt_tokens, rng)
                output = sample_tokens(spec.max_tokens, rng)
            await self._until_turn(at, slot, phase)

    async def _until_turn(self, at: int, slot: Slot, phase: str) -> None:
        """A session's wait for its next turn; cut there by the run's end (the
        drain's deadline), the session is counted as cut, not lost."""
        try:
            await sleep_until(at)
        except asyncio.CancelledError:
            self._session_cut(slot, phase)
            raise

    def _session_cut(self, slot: Slot, phase: str) -> None:
        self.recorder.session_cut(phase, self.plan.scenario_names[slot.scenario],
                                  self.plan.tenant_names[slot.tenant])
