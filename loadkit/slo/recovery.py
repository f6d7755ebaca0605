"""Recovery time: how long latency takes to come back after a disturbance.

Pure functions over the run's per-interval figures (run.json `timeseries`).

**Disturbances.** `recovery_time after PHASE` (or a `recovery_time` SLO of
scope `phase:PHASE`) times recovery from the end of that phase. Plain
`recovery_time` times it from the end of every disturbance found:

- a *spike*: a measured phase whose arrival rate (all tenants together) is at
  least twice the lowest measured phase's (as noisy neighbours are found,
  loadkit.slo.isolation);
- an *outage*: a run of measured intervals in which errors are at least half
  of what finished (errors >= completed, errors > 0): a dead server, a
  restart, a refused connection. It ends with the last such interval.

Overlapping disturbances are merged into one.

**Baseline.** The median per-interval latency p99 of the measured intervals
before the disturbance, leaving out earlier disturbances and their recovery;
at least MIN_BASELINE intervals with a value, else the recovery is unknown.

**Recovered.** An interval is *back* when its p99 is at most
(1 + TOLERANCE) x baseline, or the baseline's own 90th percentile of
per-interval p99 when that is higher (noise the baseline itself shows is no
disturbance), and it is not an outage interval; an interval that answered
nothing is not back. Recovery is reached at the start of the first of
CONSECUTIVE intervals in a row that are back, from the disturbance's end on;
`recovery_s` = that start - the end (0 when latency never left). When the
measured time (or the next disturbance) comes first, the recovery is at
least that long: a `<` threshold below it fails, else it is inconclusive.

The SLO's `observed` is the longest recovery among the disturbances; with
none found, the verdict is inconclusive.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from loadkit.result.model import (
    Disturbance,
    Interval,
    PhaseInfo,
    Recovery,
    Scope,
    SLOResult,
    Verdict,
)
from loadkit.slo.isolation import SPIKE_FACTOR
from loadkit.workload.slo_spec import OPERATORS, Objective

TOLERANCE = 0.2
CONSECUTIVE = 3
MIN_BASELINE = 5
_SLACK = 0.25  # of an interval: rotations land a little after their nominal time


@dataclass(frozen=True)
class Point:
    """One interval as recovery sees it."""

    start_s: float
    end_s: float
    p99_ms: float | None
    down: bool  # an outage interval: errors >= completed, errors > 0


def points(timeseries: Sequence[Interval], tenant: str | None = None) -> list[Point]:
    """The run's intervals: latency p99 of every request, or of one tenant's."""
    return [Point(iv.start_s, iv.end_s,
                  iv.latency_p99_ms if tenant is None else iv.tenant_latency_p99_ms.get(tenant),
                  iv.errors > 0 and iv.errors >= iv.completed)
            for iv in timeseries]


def spike_phases(rates: Mapping[str, float], phases: Sequence[PhaseInfo]) -> list[PhaseInfo]:
    """Measured phases at >= SPIKE_FACTOR x the lowest measured phase's rate."""
    measured = [p for p in phases if not p.warmup and p.name in rates]
    if len(measured) < 2:
        return []
    low = min(rates[p.name] for p in measured)
    return [p for p in measured if rates[p.name] > 0 and rates[p.name] >= SPIKE_FACTOR * low]


def outages(pts: Sequence[Point], measured: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """(start, end) of each run of consecutive measured outage intervals."""
    out: list[tuple[float, float]] = []
    run: tuple[float, float] | None = None
    for p in pts:
        if p.down and _inside(p, measured):
            run = (run[0] if run else p.start_s, p.end_s)
        elif run:
            out.append(run)
            run = None
    if run:
        out.append(run)
    return out


def disturbances(pts: Sequence[Point], phases: Sequence[PhaseInfo], rates: Mapping[str, float],
                 after: str | None = None) -> list[Disturbance]:
    """The named phase, or every spike phase and outage (overlaps merged)."""
    if after is not None:
        p = next(p for p in phases if p.name == after)
        return [Disturbance(kind="phase", name=p.name, start_s=p.start_s,
                            end_s=p.start_s + p.duration_s)]
    found = [Disturbance(kind="spike", name=p.name, start_s=p.start_s,
                         end_s=p.start_s + p.duration_s) for p in spike_phases(rates, phases)]
    found += [Disturbance(kind="outage", start_s=a, end_s=b)
              for a, b in outages(pts, measured_spans(phases))]
    merged: list[Disturbance] = []
    for d in sorted(found, key=lambda d: (d.start_s, d.end_s)):
        last = merged[-1] if merged else None
        if last is not None and d.start_s <= last.end_s:
            merged[-1] = last.model_copy(update={
                "kind": last.kind if last.kind == d.kind else f"{last.kind}+{d.kind}",
                "name": last.name or d.name, "end_s": max(last.end_s, d.end_s)})
        else:
            merged.append(d)
    return merged


def measured_spans(phases: Sequence[PhaseInfo]) -> list[tuple[float, float]]:
    return [(p.start_s, p.start_s + p.duration_s) for p in phases if not p.warmup]


def recover(pts: Sequence[Point], found: Sequence[Disturbance],
            measured: Sequence[tuple[float, float]]) -> list[Disturbance]:
    """Each disturbance with its baseline and recovery, in time order."""
    slack = _SLACK * _interval(pts)
    end_of_run = max((b for _a, b in measured), default=0.0)
    excluded: list[tuple[float, float]] = []  # disturbances and their recoveries so far
    out = []
    for k, d in enumerate(found):
        base = [p.p99_ms for p in pts
                if p.end_s <= d.start_s + slack and _inside(p, measured) and not p.down
                and p.p99_ms is not None and not _overlaps(p, excluded, slack)]
        stop = found[k + 1].start_s if k + 1 < len(found) else end_of_run
        if len(base) < MIN_BASELINE:
            out.append(d.model_copy(update={
                "baseline_intervals": len(base),
                "reason": f"{len(base)} measured intervals with a p99 before it; a baseline "
                          f"needs {MIN_BASELINE}"}))
            excluded.append((d.start_s, stop))
            continue
        baseline = statistics.median(base)
        own_noise = statistics.quantiles(base, n=10, method="inclusive")[-1]
        limit = max((1.0 + TOLERANCE) * baseline, own_noise)
        after = [p for p in pts if p.start_s >= d.end_s - slack and p.start_s < stop - slack
                 and _inside(p, measured)]
        at = _first_back(after, limit)
        update: dict[str, object] = {"baseline_ms": round(baseline, 3), "limit_ms": round(limit, 3),
                                     "baseline_intervals": len(base)}
        if at is None:
            update["reason"] = (f"not back by {stop:.1f}s (the "
                                f"{'next disturbance' if k + 1 < len(found) else 'end of the run'})")
            excluded.append((d.start_s, stop))
        else:
            update |= {"recovered_at_s": round(at, 3),
                       "recovery_s": round(max(0.0, at - d.end_s), 3)}
            excluded.append((d.start_s, at))
        out.append(d.model_copy(update=update))
    return out


def _first_back(after: Sequence[Point], limit: float) -> float | None:
    streak: list[Point] = []
    for p in after:
        back = not p.down and p.p99_ms is not None and p.p99_ms <= limit
        contiguous = not streak or p.start_s - streak[-1].end_s < 0.5 * (p.end_s - p.start_s)
        streak = (streak + [p] if contiguous else [p]) if back else []
        if len(streak) >= CONSECUTIVE:
            return streak[0].start_s
    return None


def recovery_result(o: Objective, timeseries: Sequence[Interval], phases: Sequence[PhaseInfo],
                    rates: Mapping[str, float]) -> SLOResult:
    """The verdict of a recovery_time objective on the run's intervals;
    `rates[phase]` is the phase's arrival rate, all tenants together."""
    scope = Scope(o.scope)
    after = o.after or (scope.name if scope.kind == "phase" else None)

    def result(verdict: Verdict, reason: str, observed: float | None = None, samples: int = 0,
               judged: list[Disturbance] | None = None) -> SLOResult:
        rec = None if judged is None else Recovery(tolerance=TOLERANCE, consecutive=CONSECUTIVE,
                                                   disturbances=judged)
        return SLOResult(name=o.name, text=o.text, metric=o.metric, scope=scope, op=o.op,
                         threshold=o.threshold, unit=o.unit, observed=observed,
                         samples=samples, verdict=verdict, reason=reason, recovery=rec)

    if scope.kind == "scenario":
        return result(Verdict.INCONCLUSIVE, "recovery is judged on every request's or one "
                      "tenant's per-interval p99; a scenario has none of its own")
    if after is not None and all(p.name != after for p in phases):
        return result(Verdict.INCONCLUSIVE, f"no phase named {after!r}")
    pts = points(timeseries, scope.name if scope.kind == "tenant" else None)
    measured = measured_spans(phases)
    found = disturbances(pts, phases, rates, after)
    samples = sum(1 for p in pts if p.p99_ms is not None and _inside(p, measured))
    if not found:
        return result(Verdict.INCONCLUSIVE, "no disturbance to recover from: no phase at "
                      f"{SPIKE_FACTOR:g}x the lowest rate, and no outage (an interval whose "
                      "errors were at least half of what finished)", samples=samples,
                      judged=[])
    judged = recover(pts, found, measured)
    ok = OPERATORS[o.op]
    verdicts, values, notes = [], [], []
    for d in judged:
        what = f"{d.kind} {d.name}" if d.name else d.kind
        span = f"{what} {d.start_s:.1f}-{d.end_s:.1f}s"
        if d.recovery_s is not None:
            values.append(d.recovery_s * 1000.0)
            verdicts.append(Verdict.PASS if ok(d.recovery_s * 1000.0, o.threshold)
                            else Verdict.FAIL)
            notes.append(f"{span}: back after {d.recovery_s:g}s (p99 <= {d.limit_ms:g} ms, "
                         f"baseline {d.baseline_ms:g} ms)")
        elif d.baseline_ms is not None:  # not back before the next disturbance or the end
            stop = next((x.start_s for x in judged if x.start_s > d.start_s),
                        max((b for _a, b in measured), default=d.end_s))
            at_least = max(0.0, stop - d.end_s) * 1000.0
            values.append(at_least)
            lower_bound_decides = ok(at_least, o.threshold) != o.op.startswith("<")
            verdicts.append(Verdict.FAIL if o.op.startswith("<") and lower_bound_decides
                            else Verdict.PASS if lower_bound_decides else Verdict.INCONCLUSIVE)
            notes.append(f"{span}: {d.reason}, so at least {at_least / 1000:g}s")
        else:
            verdicts.append(Verdict.INCONCLUSIVE)
            notes.append(f"{span}: {d.reason}")
    observed = max(values) if values else None
    return result(Verdict.overall(verdicts), "; ".join(notes), observed, samples, judged)


def phase_rates(declared: Mapping[tuple[str, str], float | None],
                scheduled: Mapping[tuple[str, str], int],
                durations: Mapping[str, float]) -> dict[str, float]:
    """Arrival rate per phase, all tenants together: `declared[(tenant, phase)]`
    (req/s), or where a tenant has none (traces, closed loops) what was sent,
    `scheduled[(phase, tenant)]` over the phase's duration."""
    out: dict[str, float] = {}
    for (tenant, phase), rate in declared.items():
        if rate is None:
            rate = scheduled.get((phase, tenant), 0) / max(durations.get(phase, 0.0), 1e-9)
        out[phase] = out.get(phase, 0.0) + rate
    return out


def _interval(pts: Sequence[Point]) -> float:
    return statistics.median(p.end_s - p.start_s for p in pts) if pts else 1.0


def _inside(p: Point, spans: Sequence[tuple[float, float]]) -> bool:
    mid = (p.start_s + p.end_s) / 2.0
    return any(a <= mid < b for a, b in spans)


def _overlaps(p: Point, spans: Sequence[tuple[float, float]], slack: float) -> bool:
    return any(p.start_s < b - slack and p.end_s > a + slack for a, b in spans)
