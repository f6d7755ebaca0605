"""The capacity search, pure: which load to probe next, and when to stop.

    search(run, settings) -> Found

`run(Probe)` carries one probe out (loadkit.capacity.probe in the CLI, a
synthetic oracle in the tests) and says how it went. From `start` the load
grows geometrically until an SLO fails (or falls from `start` until one
passes), then the interval between the highest passing and the lowest
failing load is bisected at its geometric middle, since the precision is
relative: each probe halves log(high / low). It stops when
(lowest failing - highest passing) / highest passing <= precision, or when
the next probe would not fit in the budget.

What is known before the first probe (`Known`: a ramp's failing load, the
wall time it took) seeds the search: the failing load bounds it above, and
its time counts against the budget.

A probe lasts `probe_s`, or long enough to send the `evidence` its SLOs
need at its load when that is longer (probes that stop once decided only
run it all when the verdict is close). A probe that cannot be decided
(`inconclusive`: too few samples, or the threshold inside the confidence
interval with --strict) is run again at the same load for twice as long,
more samples, up to `extensions` times; it is never guessed. A probe where
the generator was the limit (fell behind its schedule, dropped arrivals,
could not send the asked rate) says nothing about the server: it ends the
search as `generator_limited` and is never counted as a failure; so does a
probe that could not be trusted otherwise.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Conclusion", "Found", "Known", "Outcome", "Probe", "Settings", "Status",
           "bisections_needed", "search"]


class Status(enum.StrEnum):
    """How one probe went."""

    PASS = "pass"  # every SLO passed
    FAIL = "fail"  # an SLO failed: the server did not carry this load
    INCONCLUSIVE = "inconclusive"  # an SLO could not be decided
    GENERATOR_LIMITED = "generator_limited"  # the generator, not the server, was the limit
    UNTRUSTED = "untrusted"  # the probe could not be done or trusted (interrupted, refused)


class Conclusion(enum.StrEnum):
    """How the search ended."""

    FOUND = "found"  # the interval is within the precision
    ABOVE_RANGE = "above_range"  # the highest load allowed (--max) passed
    BELOW_RANGE = "below_range"  # the lowest load allowed (--min, or the floor) failed
    BUDGET = "budget"  # the next probe would not fit in the budget
    INCONCLUSIVE = "inconclusive"  # a probe stayed undecided after its extensions
    GENERATOR_LIMITED = "generator_limited"
    UNTRUSTED = "untrusted"


@dataclass(frozen=True)
class Probe:
    """One probe to run: the load (req/s, or users for a closed loop) and how
    long its measured part lasts; `attempt` > 0 for an extension."""

    value: float
    duration_s: float
    attempt: int = 0


@dataclass(frozen=True)
class Outcome:
    status: Status
    elapsed_s: float  # wall time the probe took, start-up, warm-up and drain included


@dataclass(frozen=True)
class Settings:
    start: float  # first load probed
    low: float  # never probe below this
    high: float | None = None  # never probe above this (None: no ceiling)
    precision: float = 0.05  # relative width of the final interval
    probe_s: float = 60.0  # measured seconds of a first attempt
    budget_s: float = 1800.0  # wall time for all probes together
    growth: float = 2.0  # factor between loads before the interval is bracketed
    extensions: int = 2  # reruns of an inconclusive probe, each twice as long
    integer: bool = False  # loads are whole numbers (concurrency)
    # Expected wall time of a probe per measured second (start-up, warm-up and
    # drain on top), before any probe has measured it.
    cost_ratio: float = 1.0
    # Requests a probe's SLOs need to be decided (probes that stop when
    # decided): a first attempt lasts long enough to send them, at least
    # probe_s. 0: probe_s whatever the load (and always for closed loops).
    evidence: float = 0.0

    def __post_init__(self) -> None:
        if not (0 < self.low <= self.start) or (self.high is not None and self.high < self.start):
            raise ValueError("need 0 < low <= start <= high")
        if self.precision <= 0 or self.growth <= 1 or self.extensions < 0:
            raise ValueError("need precision > 0, growth > 1, extensions >= 0")

    def first_attempt_s(self, value: float) -> float:
        """Measured seconds of a first attempt at `value`: probe_s, or long
        enough to send the evidence."""
        return self.probe_s if self.integer or not self.evidence \
            else max(self.probe_s, self.evidence / value)


@dataclass(frozen=True)
class Known:
    """What the search knows before its first probe."""

    failed: float | None = None  # a load shown failing: the search stays below it
    spent_s: float = 0.0  # wall time already spent, of the budget


@dataclass(frozen=True)
class Found:
    conclusion: Conclusion
    passed: float | None  # highest load that passed: capacity >= passed
    failed: float | None  # lowest load that failed: capacity < failed
    trials: list[tuple[Probe, Outcome]] = field(default_factory=list)
    spent_s: float = 0.0
    stopped_at: float | None = None  # the load of the probe that ended the search, if one did

    @property
    def width(self) -> float | None:
        """(failed - passed) / passed, the interval's relative width."""
        if self.passed is None or self.failed is None:
            return None
        return (self.failed - self.passed) / self.passed


def bisections_needed(low: float, high: float, precision: float) -> int:
    """Probes a geometric bisection of [low, high] takes to reach `precision`."""
    ratio = math.log(high / low) / math.log1p(precision)
    return max(0, math.ceil(math.log2(ratio) - 1e-9)) if ratio > 1 else 0


def search(run: Callable[[Probe], Outcome], s: Settings, known: Known = Known()) -> Found:
    state = _State(s)
    if known.failed is not None and known.failed > s.start:
        state.failed = known.failed
    state.spent = known.spent_s
    value = _whole(s.start) if s.integer else s.start
    while True:
        status = state.probe(run, value)
        if status is None:
            return state.found(Conclusion.BUDGET)
        if status in _ENDS:
            return state.found(_ENDS[status], stopped_at=value)
        if status == Status.PASS:
            state.passed = value
            if s.high is not None and value >= s.high:
                return state.found(Conclusion.ABOVE_RANGE)
        else:
            state.failed = value
            if value <= s.low:
                return state.found(Conclusion.BELOW_RANGE)
        if state.narrow_enough():
            return state.found(Conclusion.FOUND)
        value = state.next_value()


_ENDS = {Status.INCONCLUSIVE: Conclusion.INCONCLUSIVE,
         Status.GENERATOR_LIMITED: Conclusion.GENERATOR_LIMITED,
         Status.UNTRUSTED: Conclusion.UNTRUSTED}


class _State:
    def __init__(self, s: Settings) -> None:
        self.s = s
        self.passed: float | None = None
        self.failed: float | None = None
        self.trials: list[tuple[Probe, Outcome]] = []
        self.spent = 0.0
        self.ratio = s.cost_ratio  # wall seconds per measured second, the worst seen

    def probe(self, run: Callable[[Probe], Outcome], value: float) -> Status | None:
        """Run `value`, extending an inconclusive probe; None when the budget
        cannot hold the next attempt."""
        first = self.s.first_attempt_s(value)
        for attempt in range(self.s.extensions + 1):
            probe = Probe(value, first * 2 ** attempt, attempt)
            if self.spent + probe.duration_s * self.ratio > self.s.budget_s:
                return None
            outcome = run(probe)
            self.trials.append((probe, outcome))
            self.spent += outcome.elapsed_s
            self.ratio = max(self.ratio, outcome.elapsed_s / probe.duration_s)
            if outcome.status != Status.INCONCLUSIVE:
                return outcome.status
        return Status.INCONCLUSIVE

    def narrow_enough(self) -> bool:
        lo, hi = self.passed, self.failed
        if lo is None or hi is None:
            return False
        return (hi - lo) / lo <= self.s.precision or (self.s.integer and hi - lo <= 1)

    def next_value(self) -> float:
        s, lo, hi = self.s, self.passed, self.failed
        if lo is not None and hi is not None:
            mid = math.sqrt(lo * hi)
            return float(min(max(_whole(mid), lo + 1), hi - 1)) if s.integer else mid
        if hi is None:  # still growing
            assert lo is not None
            nxt = max(lo + 1, math.ceil(lo * s.growth)) if s.integer else lo * s.growth
            return float(min(nxt, s.high) if s.high is not None else nxt)
        nxt = max(1, math.floor(hi / s.growth)) if s.integer else hi / s.growth
        return float(max(nxt, s.low))  # still falling

    def found(self, conclusion: Conclusion, stopped_at: float | None = None) -> Found:
        return Found(conclusion, self.passed, self.failed, list(self.trials),
                     round(self.spent, 3), stopped_at)


def _whole(value: float) -> float:
    return float(max(1, round(value)))
