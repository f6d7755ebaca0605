"""SLOs judged while the run goes: windowed objectives and abort on breach.

The recorder calls `LiveJudge.on_interval` at every rotation with that
interval's histograms and counts. A windowed objective ("p99 < 300 ms in
every 60-s window") is evaluated on each window's own merged histogram, so a
bad hour cannot hide inside a good day. An `abort: true` objective is
evaluated on what its scope has measured so far (or on each window, when it
has one), from `after` seconds into the run; a *clear* breach (a failing
verdict whose 99.9% interval excludes the threshold; see ABORT_LEVEL) stops
the run. A trend objective over a time metric ("ttft p99 trend < 10%/h")
keeps one value per window the same way, and is fitted when the run ends
(loadkit.slo.trend).
Every SLO decided by counts is tracked over its whole scope, each
interval's requests beyond its threshold kept in batches for its effective
sample size (slo/correlation.py); with stop_when_decided, once the
always-valid test (slo/confidence.py) decides them all, the run ends.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from loadkit.record.histogram import HdrHistogram, add_into, new_histogram
from loadkit.record.recorder import Interval
from loadkit.result.model import Scope, SLOResult, Verdict, Window, Windows
from loadkit.slo.confidence import always_valid_decides
from loadkit.slo.correlation import ShareBatches
from loadkit.slo.evaluate import Counts, Served, evaluate, samples_needed, tail_counts
from loadkit.slo.scopes import Phases
from loadkit.slo.trend import default_window, trend_result
from loadkit.workload.slo_spec import TIME_METRICS, Objective

# An interval whose end lies within this share of an interval of a window's
# end closes the window (rotations land a little after their nominal time).
_SLACK = 0.25
# Abort checks repeat every interval: each uses a 99.9% interval, so a run is
# not stopped by the noise of its first minutes.
ABORT_LEVEL = 0.999
# stop_when_decided: no decision before this many whole intervals.
DECIDE_AFTER_INTERVALS = 5


def _counts(c: Counter, duration_s: float) -> Counts:
    return Counts(c["completed"], c["errors"], c["dropped"], duration_s, c["good"], c["tokens"],
                  served=Served(c["served_completed"], c["served_good"], c["served_tokens"]))


@dataclass
class _Tracked:
    """One objective's accumulation over its current window (or so far)."""

    objective: Objective
    start_s: float  # the window's (or the scope's) start
    end_s: float  # the scope's end
    scope_start_s: float = 0.0
    hist: HdrHistogram = field(default_factory=new_histogram)
    counts: Counter = field(default_factory=Counter)
    last_s: float = 0.0
    windows: list[Window] = field(default_factory=list)
    window_s: float | None = None  # windowed objectives and trends: the window's length
    # Counted objectives: each interval's requests beyond the threshold, for n_eff.
    batches: ShareBatches | None = None

    def add(self, interval: Interval, hists: dict, keyed: Counter,
            in_scope: Callable[[str, str, str], bool]) -> None:
        o = self.objective
        mine = [h for (metric, phase, scenario, tenant), h in hists.items()
                if metric == o.metric and in_scope(phase, scenario, tenant)]
        for h in mine:
            add_into(self.hist, h)
        now: Counter = Counter()
        for (what, phase, scenario, tenant), n in keyed.items():
            if in_scope(phase, scenario, tenant):
                now[what] += n
        self.counts.update(now)
        self.last_s = interval.end_s
        if self.batches is not None and (tail := tail_counts(o, mine, _counts(now, 0.0))):
            self.batches.add(tail[0], tail[2])

    def totals(self) -> Counts:
        # Stragglers after the scope's end add to its shares, not to its time:
        # a rate counts what ended inside the scope (Served).
        return _counts(self.counts, max(min(self.last_s, self.end_s) - self.start_s, 0.0))

    def n_eff(self) -> float | None:
        return self.batches.n_eff() if self.batches is not None else None

    def judge(self, strict: bool, level: float = 0.95, correlated: bool = True) -> SLOResult:
        """Its verdict so far; `correlated=False` takes the samples as
        independent (an abort judges this run's requests, not the process)."""
        counts = self.totals()
        o = self.objective
        if o.trend is not None:  # a trend's window: its value, as a plain objective's
            return evaluate(o.model_copy(update={"trend": None}), [self.hist], counts,
                            strict=strict, level=level, decide=False)
        return evaluate(o, [self.hist], counts, strict=strict, level=level,
                        n_eff=self.n_eff() if correlated else None)

    def close_window(self, strict: bool) -> SLOResult:
        r = self.judge(strict)
        self.windows.append(Window(start_s=round(self.start_s, 3), end_s=round(self.last_s, 3),
                                   observed=r.observed, samples=r.samples, verdict=r.verdict,
                                   ci_low=r.ci_low, ci_high=r.ci_high))
        self.start_s, self.hist, self.counts = self.last_s, new_histogram(), Counter()
        return r


@dataclass(frozen=True)
class Decision:
    """The run's verdict decided while it went (stop_when_decided): every SLO
    passed, or one failed (`failed`: its name), which no other can undo."""

    at_s: float
    verdicts: dict[str, Verdict]  # by objective name, those decided
    failed: str | None = None

    @property
    def reason(self) -> str:
        test = "the always-valid test (95%, valid however often it looks)"
        if self.failed is not None:
            return f"`{self.failed}` was decided failing by {test}, which fails the run"
        return f"every SLO was decided by {test}"


class LiveJudge:
    """Tracks windowed, abort and counted objectives (the last for their
    n_eff, and to decide them early); `on_breach` stops the run, `on_decided`
    (stop_when_decided) ends it once the verdict is decided."""

    def __init__(self, objectives: list[Objective], phases: Phases, strict: bool,
                 on_breach: Callable[[SLOResult, float], None], interval_s: float = 1.0,
                 on_decided: Callable[[Decision], None] | None = None):
        self.phases, self.strict, self.on_breach = phases, strict, on_breach
        self.on_decided, self.interval_s = on_decided, interval_s
        self.slack = _SLACK * interval_s
        self.tracked = []
        for o in objectives:
            trend = o.trend is not None and o.metric in TIME_METRICS
            if o.window_s is not None or o.abort or trend or o.counted:
                start, end = phases.span(Scope(o.scope))
                window = o.window_s
                if trend and o.trend is not None:
                    window = o.trend.window_s or default_window(end - start, interval_s)
                self.tracked.append(_Tracked(o, start, end, scope_start_s=start,
                                             window_s=window,
                                             batches=ShareBatches() if o.counted else None))
        self.breach: tuple[SLOResult, float] | None = None
        self.decided: Decision | None = None
        # Decisions wait for this many whole intervals of the earliest scope.
        self._decide_from_s = min((t.scope_start_s for t in self.tracked), default=0.0) \
            + DECIDE_AFTER_INTERVALS * interval_s
        # ...and are early only before the last scope ends: a verdict reached
        # in the drain ended nothing (the run stops there anyway).
        self._decide_until_s = max((t.end_s for t in self.tracked), default=0.0)
        self._scope_cache: dict[tuple[str, str, str, str], bool] = {}

    def __bool__(self) -> bool:
        return bool(self.tracked)

    def _in_scope(self, scope: Scope) -> Callable[[str, str, str], bool]:
        def check(phase: str, scenario: str, tenant: str) -> bool:
            key = (scope, phase, scenario, tenant)
            hit = self._scope_cache.get(key)
            if hit is None:
                hit = self._scope_cache[key] = scope in self.phases.scopes(phase, scenario, tenant)
            return hit
        return check

    def on_interval(self, interval: Interval, hists: dict, keyed: Counter) -> None:
        for t in self.tracked:
            o = t.objective
            if interval.end_s <= t.start_s + self.slack:
                continue  # the scope has not begun: nothing of it is in this interval
            # After the scope's end its stragglers still arrive (phases follow
            # intended time): they are added in, and no new breach is called.
            over = interval.start_s >= t.end_s
            t.add(interval, hists, keyed, self._in_scope(Scope(o.scope)))
            if over:
                continue
            if t.window_s is not None:
                # The scope's last window stays open for its stragglers;
                # results() closes it.
                if interval.end_s + self.slack >= t.start_s + t.window_s \
                        and interval.end_s < t.end_s - self.slack:
                    # Judged at the stricter level before the window closes.
                    strict_r = t.judge(self.strict, ABORT_LEVEL, correlated=False) if o.abort else None
                    r = t.close_window(self.strict)
                    clear = strict_r is not None and strict_r.verdict == Verdict.FAIL \
                        and not strict_r.marginal
                    if o.abort and self._window_breach(t, clear):
                        self._breach(r, interval.end_s, t)
            elif o.abort and interval.end_s >= t.scope_start_s + o.abort_after_s:
                r = t.judge(self.strict, ABORT_LEVEL, correlated=False)
                if r.verdict == Verdict.FAIL and not r.marginal:
                    self._breach(r, interval.end_s, t)
        if self.on_decided is not None and self.decided is None and self.breach is None \
                and self._decide_from_s <= interval.end_s + self.slack \
                and interval.end_s < self._decide_until_s - self.slack:
            self._decide(interval.end_s)

    def _decide(self, at_s: float) -> None:
        """The run's verdict is decided by the always-valid test on all each
        scope has measured, once every SLO passes or one fails: the run can
        end (no correction is owed for looking after every interval)."""
        verdicts: dict[str, Verdict] = {}
        failed = None
        for t in self.tracked:
            tail = tail_counts(t.objective, [t.hist], t.totals()) if t.objective.counted else None
            holds = None if tail is None else always_valid_decides(*tail, n_eff=t.n_eff())
            if holds is not None:
                verdicts[t.objective.name] = Verdict.PASS if holds else Verdict.FAIL
            failed = failed or (t.objective.name if holds is False else None)
        if failed is None and len(verdicts) < len(self.tracked):
            return
        self.decided = Decision(at_s, verdicts, failed)
        assert self.on_decided is not None
        self.on_decided(self.decided)

    def _window_breach(self, t: _Tracked, clear: bool) -> bool:
        o = t.objective
        if not clear or t.last_s < t.scope_start_s + o.abort_after_s:
            return False
        failed = sum(w.verdict == Verdict.FAIL for w in t.windows)
        if o.window_share is None or o.window_s is None:
            return True
        expected = math.ceil((t.end_s - t.windows[0].start_s) / o.window_s - 1e-9)
        return failed > (1.0 - o.window_share) * expected  # the share is out of reach

    def _breach(self, r: SLOResult, at_s: float, t: _Tracked) -> None:
        if self.breach is None:
            self.breach = (r, at_s)
            self.on_breach(r, at_s)

    def n_eff(self) -> dict[str, float | None]:
        """Each counted objective's effective sample size, by name."""
        return {t.objective.name: t.n_eff() for t in self.tracked if t.batches is not None}

    def results(self) -> dict[str, SLOResult]:
        """Final verdicts of windowed objectives and of the objective that
        aborted the run, by objective name; call once the run has ended."""
        out: dict[str, SLOResult] = {}
        for t in self.tracked:
            o = t.objective
            if t.window_s is not None:
                if t.counts or t.hist.get_total_count():
                    t.close_window(self.strict)  # the last, partial window
                out[o.name] = windowed_result(o, t.windows) if o.trend is None else \
                    trend_result(o, [((w.start_s + w.end_s) / 2, w.observed)
                                     for w in t.windows if w.observed is not None],
                                 windows=len(t.windows), window_s=t.window_s,
                                 origin_s=t.scope_start_s, value_unit="ms",
                                 samples=sum(w.samples for w in t.windows
                                             if w.observed is not None))
        if self.breach is not None:
            r, at_s = self.breach
            reason = (f"aborted the run at {at_s:.1f}s: a clear breach (the 99.9% interval "
                      f"excludes the threshold)")
            # The row shows its 95% interval, as every other row does: the
            # breach was judged at the abort's 99.9%.
            prior = out.get(r.name) or next(
                (t.judge(self.strict) for t in self.tracked if t.objective.name == r.name), None)
            out[r.name] = (prior or r).model_copy(update={
                "verdict": Verdict.FAIL,
                "marginal": False,
                "reason": f"{reason}; {(prior or r).reason}".rstrip("; ")})
        return out


def windowed_result(o: Objective, windows: list[Window]) -> SLOResult:
    """One verdict from per-window verdicts: every window (or the share
    asked for) must pass; windows with too few samples are not counted."""
    judged = [w for w in windows if w.verdict != Verdict.INCONCLUSIVE]
    passed = sum(w.verdict == Verdict.PASS for w in judged)
    window_s = o.window_s or 0.0  # only windowed objectives come here

    def result(observed: float | None, samples: int, verdict: Verdict, reason: str,
               worst: Window | None = None) -> SLOResult:
        summary = Windows(window_s=window_s, share_required=o.window_share,
                          total=len(windows), judged=len(judged), passed=passed,
                          worst_start_s=worst.start_s if worst else None, series=windows)
        return SLOResult(name=o.name, text=o.text, metric=o.metric, scope=Scope(o.scope),
                         op=o.op, threshold=o.threshold, unit=o.unit, observed=observed,
                         samples=samples, verdict=verdict, reason=reason,
                         ci_low=worst.ci_low if worst else None,
                         ci_high=worst.ci_high if worst else None,
                         windows=summary, abort=o.abort)

    # Undecided windows: too few samples, or, with --strict, the threshold
    # inside the interval (a value's, or failures just past the tail's).
    enough = samples_needed(o.quantile) if o.quantile is not None else 1
    few = sum(w.verdict == Verdict.INCONCLUSIVE and w.observed is None and w.samples < enough
              for w in windows)
    doubtful = len(windows) - len(judged) - few
    undecided = ", ".join(part for part in (
        f"{few} had too few samples" if few else "",
        f"{doubtful} had the threshold inside their interval (--strict)" if doubtful else "")
        if part)
    if not judged:
        why = (f"none of {len(windows)} windows was decided: {undecided}"
               if windows else "no window was measured")
        return result(None, 0, Verdict.INCONCLUSIVE, why)
    # The worst window: a failing one without a value (failures beyond the
    # tail) first, else the highest for an upper bound, lowest for a lower one.
    valued = [w for w in judged if w.observed is not None]
    unvalued = [w for w in judged if w.observed is None and w.verdict == Verdict.FAIL]
    pick = max if o.op.startswith("<") else min
    worst = unvalued[0] if unvalued else pick(valued, key=lambda w: w.observed or 0.0) \
        if valued else judged[0]
    need = len(judged) if o.window_share is None else math.ceil(o.window_share * len(judged) - 1e-9)
    reason = f"{passed} of {len(judged)} windows passed"
    reason += f" ({undecided})" if undecided else ""
    reason += f"; worst at {worst.start_s:.0f}s"
    return result(worst.observed, sum(w.samples for w in judged),
                  Verdict.PASS if passed >= need else Verdict.FAIL, reason, worst)
