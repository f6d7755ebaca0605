"""A whole capacity search: check the request, run the probes, build the result.

The search itself is pure (search.py), and so are the gate (gate.py) and the
summary built here; probes are the only I/O (probe.py).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from loadkit import __version__
from loadkit.capacity.gate import parse_expect, regate
from loadkit.capacity.knee import knee_of
from loadkit.capacity.model import (
    USERS,
    CapacityResult,
    Interval,
    ProbeRecord,
    Ramp,
    Settings,
    SloPoint,
    WorkloadRef,
)
from loadkit.capacity.probe import ProbeSetup, run_probe
from loadkit.capacity.ramp import ramp_loads, run_ramp
from loadkit.capacity.scale import (
    WARMUP_MIN_S,
    WARMUP_SHARE,
    load_of,
    loops_of,
    require_users,
    unit_of,
)
from loadkit.capacity.search import Conclusion, Found, Known, Outcome, Probe, Status, search
from loadkit.capacity.search import Settings as SearchSettings
from loadkit.errors import InputError
from loadkit.result.model import Verdict
from loadkit.slo.confidence import samples_to_decide
from loadkit.urls import without_credentials
from loadkit.workload.loader import load_workload
from loadkit.workload.slo_spec import Objective

FLOOR_FACTOR = 64  # without --min, the search may fall this far below the workload's load
START_UP_S = 3.0  # a probe's guessed cost beyond warm-up and measurement, before one ran
EVIDENCE_MARGIN = 2.0  # room for a few requests beyond a threshold


@dataclass(frozen=True)
class Request:
    setup: ProbeSetup
    start: float | None = None  # --min; default: the workload's own load
    high: float | None = None  # --max
    precision: float = 0.05
    probe_s: float = 60.0
    budget_s: float = 1800.0
    growth: float = 2.0
    extensions: int = 2
    expect: str | None = None
    production: float | None = None
    ramp_s: float | None = None  # --ramp: a ramp of steps this long before the probes


def find_capacity(req: Request, on_probe: Callable[[ProbeRecord], None] | None = None,
                  on_ramp: Callable[[Ramp], None] | None = None,
                  on_start: Callable[[], None] | None = None) -> CapacityResult:
    """Search (after the ramp, with --ramp), then judge; InputError (exit 2)
    before any probe when the request cannot be carried out, else `on_start`
    once it can."""
    started = _now()
    loaded = load_workload(req.setup.path, dataclasses.replace(req.setup.overrides,
                                                               duration=req.probe_s))
    w = loaded.workload
    unit = unit_of(w)
    if not w.objectives():
        raise InputError("capacity is the highest load that meets the SLOs, and this workload "
                         "has none: add `slos:` to it or give --slo FILE")
    if req.expect is not None:
        parse_expect(req.expect, unit)  # bad wording: exit 2 before any probe
        if req.expect.strip().startswith("headroom") and req.production is None:
            raise InputError(f"--expect {req.expect!r} needs --production-rate")
    settings = _settings(req, load_of(loaded), unit, len(loops_of(w)))
    if req.setup.until_decided and all(o.counted for o in w.objectives()):
        settings = dataclasses.replace(settings, evidence=evidence(w.objectives()))
        first = settings.first_attempt_s(settings.start)
        if req.ramp_s is None and first * settings.cost_ratio > settings.budget_s:
            raise InputError(
                f"--budget {settings.budget_s:g}s cannot hold the first probe: its SLOs need "
                f"{settings.evidence:,.0f} requests to be decided, {first:.0f}s at "
                f"{settings.start:g} {unit} (about {first * settings.cost_ratio:.0f}s with its "
                "warm-up and start-up)")
    ramp, known = None, Known()
    if req.ramp_s is not None:  # ramp_workload refuses closed loops (users)
        top = settings.high if settings.high is not None else settings.start * FLOOR_FACTOR
        loads = ramp_loads(settings.start, top)
        planned = (len(loads) + 1) * req.ramp_s + START_UP_S
        if planned > settings.budget_s:
            raise InputError(f"--budget {settings.budget_s:g}s cannot hold the ramp: "
                             f"{len(loads)} steps of {req.ramp_s:g}s (narrow --min/--max "
                             "or shorten --ramp)")
    if on_start is not None:
        on_start()
    if req.ramp_s is not None:
        ramp = run_ramp(req.setup, loads, req.ramp_s)
        if on_ramp is not None:
            on_ramp(ramp)
        known = Known(failed=ramp.failed, spent_s=ramp.elapsed_s)
        if ramp.confirm is not None:
            settings = dataclasses.replace(settings, start=ramp.confirm)
    records: list[ProbeRecord] = []

    def run(probe: Probe) -> Outcome:
        record = run_probe(req.setup, probe, len(records) + 1)
        records.append(record)
        if on_probe is not None:
            on_probe(record)
        return Outcome(record.status, record.elapsed_s)

    found = search(run, settings, known)
    result = build(found, records, settings, unit, strict=req.setup.strict, ramp=ramp,
                   started_at=started, finished_at=_now(),
                   target=without_credentials(w.target) if w.target
                   else "embedded simulator (one per probe)",
                   workload=WorkloadRef(name=w.name, path=loaded.path, sha256=loaded.sha256))
    return regate(result, req.expect, req.production)


def evidence(objectives: list[Objective]) -> float:
    """Requests enough to decide every SLO when few are beyond its threshold:
    twice what the always-valid test needs with none beyond."""
    def allowed(o: Objective) -> float:
        if o.quantile is not None:
            return 1.0 - o.quantile if o.op.startswith("<") else o.quantile
        return o.threshold if o.op.startswith("<") else 1.0 - o.threshold
    return EVIDENCE_MARGIN * max((samples_to_decide(a) for o in objectives
                                  if 0.0 < (a := allowed(o)) < 1.0), default=0)


def _settings(req: Request, own: float, unit: str, loops: int = 1) -> SearchSettings:
    """`loops`: a closed-loop workload's tenants, each running one user at least."""
    integer = unit == USERS
    start = req.start if req.start is not None else own
    if start <= 0:
        raise InputError("the workload's load is zero: give --min")
    low = start if req.start is not None else (
        float(max(1, loops)) if integer else start / FLOOR_FACTOR)
    if integer:
        require_users(low, loops)
    if req.high is not None and req.high < start:
        first = "--min" if req.start is not None else "the workload's own load"
        raise InputError(f"--max {req.high:g} is below the first load probed, {first} "
                         f"({start:g} {unit})" + ("" if req.start is not None else
                                                   ": give --min too"))
    warmup = max(WARMUP_MIN_S, WARMUP_SHARE * req.probe_s)
    ratio = (req.probe_s + warmup + START_UP_S) / req.probe_s
    if req.budget_s < req.probe_s * ratio:
        raise InputError(f"--budget {req.budget_s:g}s cannot hold one probe of "
                         f"{req.probe_s:g}s (about {req.probe_s * ratio:.0f}s with its warm-up "
                         "and start-up)")
    try:
        return SearchSettings(start=start, low=min(low, start), high=req.high,
                              precision=req.precision, probe_s=req.probe_s,
                              budget_s=req.budget_s, growth=req.growth,
                              extensions=req.extensions, integer=integer, cost_ratio=ratio)
    except ValueError as exc:
        raise InputError(f"capacity: {exc}") from None


def build(found: Found, records: list[ProbeRecord], s: SearchSettings, unit: str, *,
          strict: bool = False, started_at: str = "", finished_at: str = "",
          target: str = "", workload: WorkloadRef | None = None,
          ramp: Ramp | None = None) -> CapacityResult:
    """The result of a finished search, not yet judged against an expectation."""
    binding = binding_slo(records, found.failed, ramp)
    trusted = found.conclusion not in (Conclusion.GENERATOR_LIMITED, Conclusion.UNTRUSTED)
    last = records[-1] if records else None
    untrusted = [] if trusted or last is None else \
        [f"probe {last.index} at {last.value:.4g} {unit}: {r}" for r in last.reasons]
    return CapacityResult(
        loadkit_version=__version__, started_at=started_at, finished_at=finished_at,
        target=target, workload=workload or WorkloadRef(name="", path="", sha256=""), unit=unit,
        conclusion=found.conclusion, summary=summary(found, unit, binding, last),
        capacity=Interval(passed=found.passed, failed=found.failed,
                          width=round(found.width, 6) if found.width is not None else None),
        binding_slo=binding.name if binding else None,
        knee=knee_of(records, found.passed, found.failed),
        settings=Settings(start=s.start, low=s.low, high=s.high, precision=s.precision,
                          probe_s=s.probe_s, budget_s=s.budget_s, growth=s.growth,
                          extensions=s.extensions, strict=strict,
                          ramp_s=ramp.step_s if ramp else None),
        spent_s=found.spent_s, probes=records, ramp=ramp, verdict=Verdict.INCONCLUSIVE, trusted=trusted,
        untrusted_reasons=untrusted, advice=advice(found, last))


def binding_slo(records: list[ProbeRecord], failed: float | None,
                ramp: Ramp | None = None) -> SloPoint | None:
    """The SLO that binds first: of those failing at the lowest failing load
    (a probe's, else the ramp's step), the one furthest beyond its threshold."""
    at = [r.slos for r in records if r.status == Status.FAIL and r.value == failed]
    if not at and ramp is not None and failed is not None and ramp.failed == failed:
        at = [s.slos for s in ramp.steps if s.value == failed]
    if not at:
        return None
    failing = [s for s in at[-1] if s.verdict == Verdict.FAIL]
    return max(failing, key=_excess, default=None)


def _excess(s: SloPoint) -> float:
    if s.observed is None:  # failures beyond the tail: as far beyond as can be
        return float("inf")
    if s.op.startswith("<"):
        return s.observed / s.threshold if s.threshold else float("inf")
    return s.threshold / s.observed if s.observed else float("inf")


def summary(found: Found, unit: str, binding: SloPoint | None,
            last: ProbeRecord | None) -> str:
    lo, hi = found.passed, found.failed
    known = _interval(lo, hi, unit)
    binds = f"; `{binding.name}` binds first" if binding else ""
    c = found.conclusion
    if c == Conclusion.FOUND:
        return f"capacity {known}{binds}"
    if c == Conclusion.ABOVE_RANGE:
        return f"capacity is at least {lo:.4g} {unit}: the highest load allowed (--max) passed"
    if c == Conclusion.BELOW_RANGE:
        return f"capacity is below {hi:.4g} {unit}: the lowest load allowed failed{binds}"
    if c == Conclusion.BUDGET:
        return f"the budget ran out before the precision was reached: capacity {known}{binds}"
    at = f"at {found.stopped_at:.4g} {unit}" if found.stopped_at is not None else ""
    why = "; ".join(last.reasons) if last is not None else ""
    if c == Conclusion.INCONCLUSIVE:
        runs = last.attempt + 1 if last is not None else 0
        return (f"the SLOs could not be decided {at} in {runs} probe(s) of growing length "
                f"({why}): capacity {known}")
    if c == Conclusion.GENERATOR_LIMITED:
        return (f"the generator, not the server, was the limit {at} ({why}); that is no "
                f"measure of the server: capacity {known}")
    return f"a probe {at} could not be trusted ({why}): capacity {known}"


def _interval(lo: float | None, hi: float | None, unit: str) -> str:
    if lo is not None and hi is not None:
        return (f"between {lo:.4g} and {hi:.4g} {unit} (highest passing, lowest failing; "
                f"{(hi - lo) / lo:.1%} apart)")
    if lo is not None:
        return f"at least {lo:.4g} {unit} (no load failed)"
    if hi is not None:
        return f"below {hi:.4g} {unit} (no load passed)"
    return "unknown (no probe decided)"


def advice(found: Found, last: ProbeRecord | None) -> list[str]:
    c = found.conclusion
    if c == Conclusion.GENERATOR_LIMITED:
        out = ["the generator is the limit: give it more cores (--workers N or auto), or run "
               "it on a bigger machine"]
        if last is not None and last.dropped:
            out.append("arrivals were dropped at client.max_in_flight: raise it in the "
                       "workload's `client:`")
        return out
    return {Conclusion.BUDGET: ["raise --budget, loosen --precision, or narrow --min/--max"],
            Conclusion.INCONCLUSIVE: ["lengthen --probe (more samples per probe), or judge "
                                      "a lower percentile"],
            Conclusion.ABOVE_RANGE: ["raise --max to find where it fails"],
            Conclusion.BELOW_RANGE: ["lower --min to find where it passes"]}.get(c, [])


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
