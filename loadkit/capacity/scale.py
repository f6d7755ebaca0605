"""A workload at a given load: every rate scaled by one factor (or every
closed loop's concurrency), so tenants keep their shares and shapes their
form; a trace keeps its timing through `rate_scale` (each request kept with
that probability, or repeated). Pure functions of the validated workload.

The load of an open-loop workload is its mean total rate over the measured
phases, as declared (a trace's: its requests in those phases per second);
of a closed-loop one, its users in the first measured phase.
"""

from __future__ import annotations

import dataclasses
import random

from pydantic import ValidationError

from loadkit.arrivals import phase_arrivals
from loadkit.arrivals.processes import mean_rate
from loadkit.arrivals.trace import replay
from loadkit.capacity.model import RATE, USERS
from loadkit.errors import InputError
from loadkit.workload.arrival_specs import (
    ArrivalSpec,
    Closed,
    Trace,
)
from loadkit.workload.loader import LoadedWorkload
from loadkit.workload.models import Phase, Workload
from loadkit.workload.traces import TraceRow

WARMUP_SHARE, WARMUP_MIN_S = 0.2, 1.0  # a probe's warm-up when the workload has none
WARMUP_PHASE = "capacity-warmup"


def unit_of(w: Workload) -> str:
    """req/s for open-loop workloads, users for closed-loop ones; InputError
    when they are mixed (one search cannot move both) or nothing arrives."""
    specs = _measured_specs(w)
    closed = [s for s in specs if isinstance(s, Closed)]
    if closed and len(closed) != len(specs):
        raise InputError("capacity searches over rate or over concurrency, not both: this "
                         "workload mixes closed-loop and open-loop arrivals")
    if not specs:
        raise InputError("the workload's measured phases have no arrivals")
    return USERS if closed else RATE


def load_of(loaded: LoadedWorkload) -> float:
    """The workload's load as written, in its unit."""
    w = loaded.workload
    if unit_of(w) == USERS:
        first = next(p for p in w.phase_list if not p.warmup)
        return float(sum(s.concurrency for t in w.all_tenants
                         if isinstance(s := w.arrival_for(t, first), Closed)))
    total = 0.0
    for t in w.all_tenants:
        for _i, p, _start, spec, into in phase_arrivals(w, t):
            if p.warmup or spec is None:
                continue
            if isinstance(spec, Trace):
                total += _trace_requests(loaded.traces[spec.path], spec, p.duration, into)
            else:
                total += (mean_rate(spec, p.duration) or 0.0) * p.duration
    return total / w.measured_s


def at_load(loaded: LoadedWorkload, value: float) -> LoadedWorkload:
    """The workload with its load set to `value` (req/s or users)."""
    base = load_of(loaded)
    if base <= 0:
        raise InputError("the workload's rates are all zero: nothing to scale")
    w = loaded.workload
    factor = value / base
    first = next(p for p in w.phase_list if not p.warmup)
    scaled = w.model_copy(update={
        "arrival": _spec(w.arrival, factor),
        "phases": [p.model_copy(update={"arrival": _spec(p.arrival, factor)}) for p in w.phases],
        "tenants": [t.model_copy(update={
            "arrival": _spec(t.arrival, factor),
            "phases": {k: _spec(v, factor) for k, v in t.phases.items()}})
            for t in w.tenants]})
    if unit_of(w) == USERS:
        # The first measured phase runs exactly the users asked, whatever the
        # rounding above did (three tenants of 1 user each ran 3 at "4", 6 at "5").
        weights = loops_of(w)
        require_users(value, len(weights))
        scaled = _exact_users(scaled, weights, first, int(value))
    return dataclasses.replace(loaded, workload=_revalidated(scaled, value, unit_of(w)))


def with_warmup(loaded: LoadedWorkload, probe_s: float) -> tuple[LoadedWorkload, float]:
    """The workload with a warm-up before its measured part (its own, else
    WARMUP_SHARE of the probe, at least WARMUP_MIN_S, at the first measured
    phase's load; none added to a closed loop), and the warm-up's length."""
    w = loaded.workload
    own = sum(p.duration for p in w.phase_list if p.warmup)
    if own > 0 or unit_of(w) == USERS:
        # loadkit's closed loops overlap at a phase boundary (the warm-up's users
        # finish their last requests while the next phase's start): up to twice
        # the users for one response time, which would load the measured start.
        return loaded, own
    seconds = max(WARMUP_MIN_S, WARMUP_SHARE * probe_s)
    if w.duration is not None:
        w = w.model_copy(update={"warmup": seconds})
    else:  # a phase like the first, and each tenant's own arrival there
        first = w.phases[0]
        w = w.model_copy(update={
            "phases": [Phase(name=WARMUP_PHASE, duration=seconds, warmup=True,
                             arrival=first.arrival), *w.phases],
            "tenants": [t.model_copy(update={"phases": {
                **t.phases, WARMUP_PHASE: t.phases[first.name]}})
                if first.name in t.phases else t for t in w.tenants]})
    return dataclasses.replace(loaded, workload=_revalidated(w, None, "")), seconds


def _spec(spec: ArrivalSpec | None, f: float) -> ArrivalSpec | None:
    return None if spec is None else spec.scaled_rate(f)


def loops_of(w: Workload) -> dict[str, int]:
    """Users of each tenant's closed loop in the first measured phase: the
    fewest users a probe can run is one per loop."""
    first = next(p for p in w.phase_list if not p.warmup)
    return {t.name: s.concurrency for t in w.all_tenants
            if isinstance(s := w.arrival_for(t, first), Closed)}


def require_users(value: float, loops: int) -> None:
    """InputError when `value` users cannot give each closed loop one."""
    if int(value) < loops:
        raise InputError(f"{value:g} users cannot run this workload's {loops} closed loops "
                         f"(one a tenant): --min {loops} at least")


def _exact_users(w: Workload, weights: dict[str, int], first: Phase, users: int) -> Workload:
    """`first` at `users` users in all, shared among its tenants' loops as
    `weights` (the workload's own users) share them; the other phases keep
    their scaled counts."""
    loops = {t.name: s for t in w.all_tenants
             if isinstance(s := w.arrival_for(t, first), Closed)}
    if not loops:
        return w
    if not w.tenants:  # one loop: the spec the phase runs, wherever it is written
        (spec,) = loops.values()

        def fix(s: ArrivalSpec | None) -> ArrivalSpec | None:
            return spec.model_copy(update={"concurrency": users}) if s is spec else s
        return w.model_copy(update={"arrival": fix(w.arrival), "phases": [
            p.model_copy(update={"arrival": fix(p.arrival)}) for p in w.phases]})
    share = apportion(users, {name: weights[name] for name in loops})
    return w.model_copy(update={"tenants": [t.model_copy(update={"phases": {
        **t.phases, first.name: loops[t.name].model_copy(update={"concurrency": share[t.name]})}})
        if t.name in loops else t for t in w.tenants]})


def apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` (at least one a key) split in proportion to `weights`: one
    each, then the rest by the largest remainder; the sum is `total`."""
    if total < len(weights):
        raise ValueError(f"{total} cannot give each of {len(weights)} one")
    rest, whole = total - len(weights), sum(weights.values())
    exact = {k: rest * v / whole for k, v in weights.items()}
    out = {k: 1 + int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True)[
            :total - sum(out.values())]:
        out[k] += 1
    return out


def _revalidated(w: Workload, value: float | None, unit: str) -> Workload:
    """Scaling may push a value past its bounds (a rate_scale over 1000): check again."""
    try:
        return Workload.model_validate(w.model_dump(by_alias=True))
    except ValidationError as exc:
        at = f"at {value:g} {unit}: " if value is not None else ""
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise InputError(f"capacity: the workload {at}is not valid: {problems}") from None


def _measured_specs(w: Workload) -> list[ArrivalSpec]:
    return [s for t in w.all_tenants for p in w.phase_list
            if not p.warmup and (s := w.arrival_for(t, p)) is not None]


def _trace_requests(rows: list[TraceRow], spec: Trace, duration: float,
                    into: float = 0.0) -> float:
    """Requests the trace sends in a phase of `duration` that begins `into`
    seconds into it, its rate_scale included."""
    whole = spec.model_copy(update={"rate_scale": 1.0})
    n = sum(1 for offset, _row in replay(rows, whole, random.Random(0))
            if into <= offset < into + duration)
    return n * spec.rate_scale

