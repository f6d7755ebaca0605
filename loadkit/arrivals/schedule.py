"""The run's schedule: every open-loop request, in time order, pure and seeded.

The same workload and seed give the same schedule, bit for bit. Each
(tenant, phase) draws from its own generators seeded by name: one for arrival
times, one for the scenario mix and token counts, so changing one tenant or
one scenario weight does not shift another tenant's arrivals.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from loadkit.arrivals.processes import arrival_times
from loadkit.arrivals.trace import replay
from loadkit.workload.arrival_specs import ArrivalSpec, Closed, Trace
from loadkit.workload.models import Phase, Tenant, Workload
from loadkit.workload.scenarios import (
    ExponentialWait,
    LogNormal,
    Normal,
    ThinkTime,
    Tokens,
    Uniform,
    Wait,
)
from loadkit.workload.traces import TraceRow


class Slot(NamedTuple):
    """One scheduled request."""

    at: float  # seconds from the run's start
    tenant: int
    scenario: int
    phase: int
    prompt_tokens: int | None
    max_tokens: int | None
    blocks: tuple[int, ...] = ()  # a replayed trace's prompt block ids (mooncake)
    turns: int = 1  # a session's turns (the first is this slot)
    # A traced session's later turns: (offset s from this slot, prompt, output).
    script: tuple[tuple[float, int | None, int | None], ...] = ()


@dataclass(frozen=True)
class ClosedLoop:
    """A closed-loop stretch, run by workers rather than a schedule."""

    tenant: int
    phase: int
    start: float
    end: float
    spec: Closed


def phase_starts(workload: Workload) -> list[float]:
    starts, t = [], 0.0
    for p in workload.phase_list:
        starts.append(t)
        t += p.duration
    return starts


def schedule(workload: Workload, traces: Mapping[str, list[TraceRow]] | None = None
             ) -> Iterator[Slot]:
    """Every open-loop request of the run (warm-up included) in time order."""
    streams = [_tenant_slots(workload, ti, t, traces or {})
               for ti, t in enumerate(workload.all_tenants)]
    return heapq.merge(*streams)


def closed_loops(workload: Workload) -> list[ClosedLoop]:
    out = []
    starts = phase_starts(workload)
    for ti, tenant in enumerate(workload.all_tenants):
        for pi, phase in enumerate(workload.phase_list):
            spec = workload.arrival_for(tenant, phase)
            if isinstance(spec, Closed):
                out.append(ClosedLoop(ti, pi, starts[pi], starts[pi] + phase.duration, spec))
    return out


class Mix:
    """Scenario choice and token counts for one tenant in one phase."""

    @classmethod
    def of(cls, workload: Workload, tenant: Tenant, phase: Phase) -> Mix:
        """The mix of one (tenant, phase), seeded apart from its arrival times."""
        return cls(workload, tenant, random.Random(_key(workload, tenant, phase) + ":mix"))

    def __init__(self, workload: Workload, tenant: Tenant, rng: random.Random):
        names = [s.name for s in workload.scenarios]
        self.idx = [names.index(n) for n in (tenant.scenarios or names)]
        self.weights = [workload.scenarios[i].weight for i in self.idx]
        self.scenarios = workload.scenarios
        self.rng = rng

    def pick(self, row: TraceRow | None = None) -> tuple[int, int | None, int | None]:
        rng = self.rng
        i = self.idx[0] if len(self.idx) == 1 else rng.choices(self.idx, self.weights)[0]
        s = self.scenarios[i]
        prompt = getattr(s, "prompt_tokens", None)
        output = getattr(s, "max_tokens", None)
        prompt = sample_tokens(prompt, rng) if prompt is not None else None
        output = sample_tokens(output, rng) if output is not None else None
        if row is not None:  # a replayed trace's own counts win
            prompt = row.prompt_tokens if row.prompt_tokens is not None else prompt
            output = row.output_tokens if row.output_tokens else output  # 0 cannot be asked for
        return i, prompt, output


def sample_wait(spec: Wait, rng: random.Random) -> float:
    """Seconds from a duration, a {min, max} range, or a distribution."""
    if isinstance(spec, float):
        return spec
    if isinstance(spec, ThinkTime):
        return rng.uniform(spec.min, spec.max)
    if isinstance(spec, ExponentialWait):
        return rng.expovariate(1.0 / spec.mean)
    return spec.median * math.exp(rng.gauss(0.0, spec.sigma))


def sample_tokens(spec: Tokens, rng: random.Random) -> int:
    if isinstance(spec, int):
        return spec
    if isinstance(spec, Uniform):
        return rng.randint(spec.min, spec.max)
    if isinstance(spec, (Normal, LogNormal)):
        if isinstance(spec, Normal):
            value = rng.gauss(spec.mean, spec.std)
        else:
            value = spec.median * math.exp(rng.gauss(0.0, spec.sigma))
        value = max(spec.min, round(value))
        return min(value, spec.max) if spec.max else value
    return spec.value  # Fixed


def phase_arrivals(workload: Workload, tenant: Tenant
                   ) -> Iterator[tuple[int, Phase, float, ArrivalSpec | None, float]]:
    """(index, phase, its start s, the tenant's arrival in it, seconds into a
    trace it starts at) per phase. A trace plays on across the phases that
    share it (a warm-up sends its first seconds, the next phase what
    follows), whether declared once or in each phase alike: `into` is how
    far it has played when the phase begins."""
    began: dict[Trace, float] = {}
    for pi, (phase, start) in enumerate(zip(workload.phase_list, phase_starts(workload),
                                            strict=True)):
        spec = workload.arrival_for(tenant, phase)
        into = start - began.setdefault(spec, start) if isinstance(spec, Trace) else 0.0
        yield pi, phase, start, spec, into


def _tenant_slots(workload: Workload, ti: int, tenant: Tenant,
                  traces: Mapping[str, list[TraceRow]]) -> Iterator[Slot]:
    for pi, phase, start, spec, into in phase_arrivals(workload, tenant):
        if spec is None or isinstance(spec, Closed):
            continue
        mix = Mix.of(workload, tenant, phase)
        for offset, row in _offsets(spec, phase, random.Random(_key(workload, tenant, phase)),
                                    traces, into):
            scenario, prompt, output = mix.pick(row)
            session = getattr(workload.scenarios[scenario], "session", None)
            script = row.script if row is not None else ()
            turns = 1 + len(script) if script else (
                sample_tokens(session.turns, mix.rng) if session else 1)
            yield Slot(start + offset, ti, scenario, pi, prompt, output,
                       row.blocks if row is not None else (), turns, script)


def _key(workload: Workload, tenant: Tenant, phase: Phase) -> str:
    return f"{workload.seed}:{tenant.name}:{phase.name}"


def _offsets(spec: ArrivalSpec, phase: Phase, rng: random.Random,
             traces: Mapping[str, list[TraceRow]], into: float = 0.0
             ) -> Iterator[tuple[float, TraceRow | None]]:
    """Offsets from the phase's start; a trace's from `into` seconds into it."""
    if isinstance(spec, Trace):
        for offset, row in replay(traces[spec.path], spec, rng):
            if offset < into:
                continue
            if offset - into >= phase.duration:
                return
            yield offset - into, row
        return
    for t in arrival_times(spec, phase.duration, rng):
        yield t, None
