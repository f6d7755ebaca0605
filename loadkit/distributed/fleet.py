"""The master's side of a distributed run, in the loadkit process (no Locust here).

Locust's MasterRunner runs in a child (relay.py) that this module talks to
in JSON lines. The fleet gathers the expected workers (refusing any without
the token), measures each one's clock offset, hands worker k of n its shard
with one common start instant, then merges each interval's parts from every
worker into the run's Recorder and closes the interval there: the .hlog,
live SLO windows, abort and fail-fast checks, journal and reports are those
of a one-process run. A worker that is lost (Locust stops hearing its
heartbeats, it leaves, its engine fails) is never hidden: its slots it never
reported sent are `lost`, the ones it sent but never reported finished are
`unfinished` failures, and the run is untrusted unless --allow-worker-loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from loadkit.arrivals import schedule
from loadkit.distributed.wire import absorb, job, owners, shard
from loadkit.engine.runner import Progress
from loadkit.errors import ErrorKind, ExitCode, InputError, RunError
from loadkit.processes import die_with_parent, stop
from loadkit.protocols.media import add_ledgers
from loadkit.record.histogram import HdrHistogram, new_histogram, percentile_us
from loadkit.record.recorder import Interval, Recorder
from loadkit.result.model import Distribution, WorkerRow
from loadkit.served import is_loopback
from loadkit.workload.loader import LoadedWorkload

__all__ = ["Fleet", "FleetOptions", "WorkersMissing", "require_locust"]

LEAD_S = 0.5  # the common start is this far ahead of the last "go" sent


class WorkersMissing(RunError):
    """The expected workers did not all join in time."""


LOCUST_HINT = "a distributed run needs Locust: pip install 'loadkit[distributed]'"


def require_locust() -> None:
    """Locust and gevent are an extra; look for them without importing them
    (Locust patches the standard library on import: only the relay may)."""
    for name in ("locust", "gevent"):
        if importlib.util.find_spec(name) is None:
            raise InputError(f"{LOCUST_HINT} (no module named {name!r})")


@dataclass(frozen=True)
class FleetOptions:
    workers: int  # how many the run waits for
    local: bool = False  # start them here (`--workers N`) rather than wait for others
    bind_host: str = "127.0.0.1"
    bind_port: int = 0  # 0: any free port (local runs)
    token: str = ""  # required by a non-loopback bind
    join_timeout_s: float = 60.0
    allow_worker_loss: bool = False


@dataclass
class Member:
    """What the master knows of one worker."""

    worker: str
    host: str | None
    offset_s: float
    rtt_s: float
    k: int = 0
    shard: int = 0
    scheduled: Counter = field(default_factory=Counter)  # its shard's (phase, tenant)
    parts: deque = field(default_factory=deque)
    sent: int = 0  # requests (a session's turns each)
    slots: int = 0  # schedule slots (a session is one)
    reported: int = 0  # completed + errors + dropped + abandoned, from its parts
    seen: Counter = field(default_factory=Counter)  # (phase, tenant) scheduled, from its parts
    in_flight: int = 0
    unfinished: int = 0  # sent, never reported finished, when it was lost
    cpu: list[float] = field(default_factory=list)
    lateness: HdrHistogram = field(default_factory=new_histogram)
    final: dict[str, Any] | None = None  # its `done` line
    lost_at_s: float | None = None
    why: str | None = None

    @property
    def over(self) -> bool:
        return self.final is not None or self.why is not None


class Fleet:
    def __init__(self, options: FleetOptions) -> None:
        if not is_loopback(options.bind_host) and not options.token:
            raise InputError(f"--master-bind-host {options.bind_host} is not loopback: set a "
                             "shared token (LOADKIT_TOKEN) that every worker presents")
        self.options = options
        # Workers this run starts get a private token; a loopback `--master`
        # without LOADKIT_TOKEN takes any worker on this host, as documented.
        self.token = options.token or (secrets.token_hex(16) if options.local else "")
        self.members: list[Member] = []
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.refused: list[str] = []
        self.port = 0
        self.scheduled: Counter = Counter()
        self.unfinished = 0
        self.stop_cause: str | None = None
        self.stopped = False
        self.progress: Progress | None = None
        self._relay: subprocess.Popen | None = None
        self._local: list[subprocess.Popen] = []
        self._lost: list[Member] = []  # in the order they were lost
        self._cpu: float | None = None  # the interval being closed: its busiest worker's
        self._loaded: LoadedWorkload | None = None

    # -- life cycle ---------------------------------------------------------
    def __enter__(self) -> Fleet:
        require_locust()
        env = {**os.environ, "LOADKIT_TOKEN": self.token}
        self._relay = subprocess.Popen(
            [sys.executable, "-m", "loadkit.distributed.relay", "master",
             self.options.bind_host, str(self.options.bind_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            preexec_fn=die_with_parent)
        threading.Thread(target=self._read, args=(self._relay.stdout,), daemon=True,
                         name="loadkit-fleet-events").start()
        first = self._next(30.0)
        if first is None or first.get("ev") != "listening":
            self.__exit__()
            where = f"{self.options.bind_host}:{self.options.bind_port}"
            if first is not None and first.get("ev") == "bind-failed":  # bad input: exit 2
                raise InputError(f"the Locust master could not listen on {where}: "
                                 f"{first.get('why')} (--master-bind-host, --master-bind-port)")
            raise RunError(f"the Locust master could not listen on {where}")
        self.port = first["port"]
        if self.options.local:
            self._local = [subprocess.Popen(
                [sys.executable, "-m", "loadkit.distributed.relay", "worker", "127.0.0.1",
                 str(self.port)], env=env, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
                for _ in range(self.options.workers)]
        return self

    def __exit__(self, *_: object) -> None:
        self._command({"op": "quit"})  # then each gets 10 s to end on its own
        for proc in [*self._local, *([self._relay] if self._relay else [])]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop(proc)

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with contextlib.suppress(json.JSONDecodeError):
                self.events.put(json.loads(line))
        self.events.put({"ev": "relay-ended"})

    def _next(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def _command(self, order: dict[str, Any]) -> None:
        relay = self._relay
        if relay is not None and relay.stdin is not None and relay.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                relay.stdin.write(json.dumps(order) + "\n")
                relay.stdin.flush()

    # -- before the clock -----------------------------------------------------
    def gather(self) -> None:
        """Wait for the expected workers; WorkersMissing (exit 3) names who is not there."""
        want, deadline = self.options.workers, time.monotonic() + self.options.join_timeout_s
        while len(self.members) < want:
            ev = self._next(max(0.0, deadline - time.monotonic()))
            if ev is None or ev["ev"] == "relay-ended":
                break
            if ev["ev"] == "worker":
                self.members.append(Member(ev["worker"], ev.get("host"), ev["offset_s"],
                                           ev["rtt_s"]))
            elif ev["ev"] == "refused":
                self.refused.append(f"{ev['worker']} ({ev['why']})")
        if len(self.members) < want:
            joined = ", ".join(m.worker for m in self.members) or "none"
            refused = f"; refused: {', '.join(self.refused)}" if self.refused else ""
            raise WorkersMissing(
                f"{want - len(self.members)} of {want} expected workers did not join the master "
                f"on {self.options.bind_host}:{self.port} within "
                f"{self.options.join_timeout_s:g} s (joined: {joined}{refused})")

    def start(self, loaded: LoadedWorkload, base_url: str) -> float:
        """Send every worker its shard; returns the common start (master wall clock)."""
        n = len(self.members)
        for k, m in enumerate(self.members):
            m.k = k
        for k, slot in owners(schedule(loaded.workload, loaded.traces), n):
            m = self.members[k]
            m.shard += 1
            m.scheduled[(loaded.workload.phase_list[slot.phase].name,
                         loaded.workload.all_tenants[slot.tenant].name)] += 1
        order = job(loaded, base_url)
        for m in self.members:
            self._command({"op": "job", "worker": m.worker,
                           "order": {"job": order, "k": m.k, "n": n, "worker": m.worker}})
        self._await_ready()
        # Every shard has its requests prepared: the common start is near.
        start_at = time.time() + LEAD_S + max(m.rtt_s for m in self.members)
        for m in self.members:
            self._command({"op": "go", "worker": m.worker,
                           "order": {"start_at": start_at + m.offset_s}})
        self._loaded = loaded
        return start_at

    def _await_ready(self) -> None:
        """Every shard loaded and prepared, or RunError naming who is not."""
        waiting = {m.worker for m in self.members}
        deadline = time.monotonic() + self.options.join_timeout_s
        while waiting:
            ev = self._next(max(0.0, deadline - time.monotonic()))
            if ev is None or ev["ev"] == "relay-ended":
                raise RunError(f"workers not ready to start within "
                               f"{self.options.join_timeout_s:g} s: {', '.join(sorted(waiting))}")
            if ev["ev"] == "ready":
                waiting.discard(ev["worker"])
            elif ev["ev"] in ("failed", "lost") and ev.get("worker") in waiting:
                # Bad input where the worker runs (its environment lacks a
                # ${VAR}) is bad input: exit 2, as on one machine.
                error = InputError if ev.get("exit") == ExitCode.BAD_INPUT else RunError
                raise error(f"worker {ev['worker']} failed before the start: "
                            f"{ev.get('error') or ev.get('why')}")

    # -- the run ------------------------------------------------------------------
    def halt_threadsafe(self, cause: str) -> None:
        """An abort SLO or fail-fast: every worker stops, in-flight requests
        count as unfinished failures."""
        if not self.stopped:
            self.stopped, self.stop_cause = True, cause
            self._command({"op": "stop", "cause": cause})

    def finish_threadsafe(self, cause: str) -> None:
        """Every SLO decided: every worker stops releasing and drains what it
        has in flight, as at the schedule's end."""
        if not self.stopped:
            self.stopped, self.stop_cause = True, cause
            self._command({"op": "stop", "cause": cause, "finish": True})

    def interrupt(self) -> None:
        """Ctrl-C at the master: every worker stops, in-flight requests unjudged."""
        if not self.stopped:
            self.stopped = True
            self._command({"op": "stop", "cause": None})

    def in_flight(self) -> int:
        return sum(m.in_flight for m in self.members if not m.over)

    async def run(self, recorder: Recorder,
                  on_interval: Callable[[Progress], None] | None, total_s: float) -> bool:
        """Merge parts until every worker is done or lost; True when stopped early."""
        by_id = {m.worker: m for m in self.members}
        progress = self.progress = Progress(total_s=total_s)
        # The interval's CPU (its busiest worker's) before any other listener reads it.
        recorder.events.interval_closed.add_listener(self._interval_cpu, first=True)
        while not all(m.over for m in self.members):
            ev = await asyncio.to_thread(self._next, 0.25)
            if ev is None:
                continue
            m = by_id.get(ev.get("worker", ""))
            kind = ev["ev"]
            if kind == "relay-ended":
                for m in self.members:
                    if not m.over:
                        self._lose(m, recorder, "the Locust master relay ended")
            elif m is None:
                continue
            elif kind == "part" and m.why is None:  # a lost worker's late parts: not its
                m.parts.append(ev)
            elif kind == "done":
                m.final = ev
            elif kind in ("lost", "failed") and not m.over:
                self._lose(m, recorder, ev.get("why") or f"its engine failed: {ev.get('error')}")
            self._merge(recorder, progress, on_interval)
        self._merge(recorder, progress, on_interval)
        for m in self.members:
            if m.final is not None and m.why is None:
                self.scheduled.update({(p, t): c for p, t, c in m.final["scheduled"]})
                self.unfinished += m.final["unfinished"]
                m.sent, m.slots = m.final["sent"], m.final["slots"]
                if m.final.get("stop_cause") and self.stop_cause is None:
                    self.stop_cause = m.final["stop_cause"]
            else:  # lost: its whole shard was scheduled
                self.scheduled.update(m.scheduled - m.seen)
        return self.stopped

    def _interval_cpu(self, iv: Interval, *_: object) -> None:
        iv.cpu_percent = self._cpu

    def _merge(self, recorder: Recorder, progress: Progress,
               on_interval: Callable[[Progress], None] | None) -> None:
        """Close every interval that all running workers have reported."""
        while any(m.parts for m in self.members) and all(
                m.parts or m.over for m in self.members):
            parts = [(m, m.parts.popleft()) for m in self.members if m.parts]
            for m, p in parts:
                absorb(recorder, p)
                grown = Counter({(ph, t): c for ph, t, c in p["scheduled"]})
                m.seen.update(grown)
                self.scheduled.update(grown)  # live, for the journal
                m.sent, m.slots, m.in_flight = p["sent"], p["slots"], p["in_flight"]
                # Settled: answered, failed, dropped, or left by their client.
                m.reported += sum(n for name in ("completed", "errors", "dropped", "abandoned")
                                  for *_, n in p["counters"][name])
                for metric, *_, encoded in p["histograms"]:
                    if metric == "lateness":
                        m.lateness.decode_and_add(encoded)
                if p.get("cpu_percent") is not None:
                    m.cpu.append(p["cpu_percent"])
            end_s = max(p["end_s"] for _, p in parts)
            cpu = [p["cpu_percent"] for _, p in parts if p.get("cpu_percent") is not None]
            self._cpu = max(cpu) if cpu else None  # the busiest generator's
            iv = recorder.rotate(recorder.start_ns + int(end_s * 1e9))
            progress.last = iv
            progress.scheduled = sum(m.sent for m in self.members)
            progress.finished = sum(iv.completed for iv in recorder.intervals)
            progress.errors = sum(iv.errors for iv in recorder.intervals)
            progress.in_flight = self.in_flight()
            if on_interval:
                on_interval(progress)

    def _lose(self, m: Member, recorder: Recorder, why: str) -> None:
        """What a lost worker took with it: slots never reported sent are
        `lost`; slots sent but never reported finished are `unfinished`
        failures, charged to the last slots it sent (it sends in order)."""
        m.why = why
        m.lost_at_s = (time.monotonic_ns() - recorder.start_ns) / 1e9
        self._lost.append(m)

    def account_losses(self, recorder: Recorder) -> None:
        """After the last interval: charge each lost worker's unfinished
        requests as failures (their latency is unknown: errors, no samples)."""
        assert self._loaded is not None, "start() sends the shards first"
        w, n = self._loaded.workload, len(self.members)
        for m in self._lost:
            m.unfinished = max(0, m.sent - m.reported)  # requests
            # Charged to its last slots sent (a session's turns to its own slot).
            first = max(0, m.slots - m.unfinished)
            slots = list(shard(schedule(w, self._loaded.traces), m.k, n))[first:m.slots]
            slots = (slots * m.unfinished)[:m.unfinished] if slots else []
            message = (f"in flight on worker {m.worker} when it was lost at "
                       f"{m.lost_at_s:.1f} s ({m.why})")
            for s in slots:
                key = (ErrorKind.UNFINISHED.value, w.phase_list[s.phase].name,
                       w.scenarios[s.scenario].name, w.all_tenants[s.tenant].name)
                recorder.errors[key] += 1
            if slots and len(recorder.error_examples[ErrorKind.UNFINISHED.value]) < 3:
                recorder.error_examples[ErrorKind.UNFINISHED.value].append(message)

    def media(self) -> dict[str, dict[str, Any]]:
        """The workers' media ledgers (protocols/media.py), added up."""
        out: dict[str, dict[str, Any]] = {}
        for m in self.members:
            for name, ledger in ((m.final or {}).get("media") or {}).items():
                out[name] = add_ledgers(out.get(name, {}), ledger)
        return out

    def section(self) -> Distribution:
        rows, lost_total = [], 0
        for m in self.members:
            lost = m.shard - m.slots if m.why else 0
            lost_total += lost
            status = "done" if m.why is None else f"lost at {m.lost_at_s:.1f} s: {m.why}"
            rows.append(WorkerRow(
                worker=m.worker, host=m.host, shard=m.shard, sent=m.slots,
                lateness_p99_ms=(percentile_us(m.lateness, 99.0) / 1000.0
                                 if m.lateness.get_total_count() else None),
                cpu_percent=(m.final or {}).get("cpu_percent") or (max(m.cpu) if m.cpu else None),
                clock_offset_ms=round(m.offset_s * 1000, 3), rtt_ms=round(m.rtt_s * 1000, 3),
                status=status, lost=lost, unfinished=m.unfinished))
        lost_workers = [r for r in rows if r.status != "done"]
        note = None
        if lost_workers and self.options.allow_worker_loss:
            note = ("--allow-worker-loss: the verdict is over what was measured; "
                    + "; ".join(f"worker {r.worker} {r.status}, taking {r.lost:,} of its "
                                f"{r.shard:,} slots unsent and {r.unfinished:,} in flight"
                                for r in lost_workers))
        return Distribution(workers=rows, lost=lost_total,
                            allow_worker_loss=self.options.allow_worker_loss, note=note)

    def loss_reason(self) -> str | None:
        """Why the run is untrusted, when a worker was lost and that is not allowed."""
        lost = [m for m in self.members if m.why]
        if not lost or self.options.allow_worker_loss:
            return None
        return "; ".join(f"worker {m.worker} lost at {m.lost_at_s:.1f} s ({m.why}): "
                         f"{m.shard - m.slots:,} of its {m.shard:,} slots never sent, "
                         f"{m.unfinished:,} in flight counted as unfinished "
                         "(--allow-worker-loss to judge what was measured)" for m in lost)

    def health(self) -> dict[str, float | None]:
        """The busiest worker's engine: its CPU decides saturation."""
        cpus = [r for m in self.members if (r := (m.final or {}).get("cpu_percent")) is not None]
        steal = [r for m in self.members if (r := (m.final or {}).get("steal_percent")) is not None]
        return {"cpu_percent": max(cpus) if cpus else None,
                "steal_percent": max(steal) if steal else None}
