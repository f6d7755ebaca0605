"""SLO verdicts: pure functions over the measured histograms and counts.

A percentile SLO is decided by the exact binomial test on the samples beyond
its threshold (slo/confidence.py), failed and dropped requests counting as
slower than any threshold, with no minimum sample count: the data decide.
Where they do not, a percentile with at least 10/(1-q) samples (1,000 for
p99) takes the point estimate's verdict, marked marginal (inconclusive with
--strict); with fewer it is inconclusive, and says how many samples would
decide it. Shares (error_rate, goodput in %) take the same exact test on the
requests that failed or missed the goodput rules. Only the measured phase counts (warm-up is excluded).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from loadkit.record.histogram import (
    HdrHistogram,
    count_above,
    mean_us,
    merged,
    rank_at,
    value_at_rank_us,
)
from loadkit.result.model import Isolation, Scope, SLOResult, Verdict
from loadkit.slo.confidence import (
    exceedance_decides,
    percentile_interval,
    samples_to_pass,
    share_interval,
)
from loadkit.workload.slo_spec import OPERATORS, RECOVERY_METRIC, TIME_METRICS, Objective

PASS, FAIL, INCONCLUSIVE = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
FAILURE_AWARE = ("latency", "service_time")  # every request has them, or failed


@dataclass(frozen=True)
class Served:
    """Requests that completed inside a scope's time, by when they ended: a
    rate's numerators. So a rate is what the server delivered in that time;
    those it finished in the drain, or a session's turns after the scope, are
    not in it, and an overloaded server's rate is its capacity, not the load."""

    completed: int = 0
    good: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Counts:
    """Request outcomes in one scope of the measured phase."""

    completed: int
    errors: int
    dropped: int
    duration_s: float
    good: int = 0  # completed requests that met the goodput rules
    output_tokens: int = 0
    # Clients that left (neither completed nor failed: outside `attempts`),
    # and of them those that left for want of a first token.
    abandoned: int = 0
    impatient: int = 0
    # The rates' counts, by when the requests ended (the run, its live
    # windows and the so-far judge give them); None: the counts above stand in.
    served: Served | None = None

    @property
    def attempts(self) -> int:
        return self.completed + self.errors + self.dropped


def samples_needed(quantile: float) -> int:
    return math.ceil(round(10.0 / (1.0 - quantile), 6))  # round: 1-0.999 is inexact


def evaluate(objective: Objective, histograms: list[HdrHistogram], counts: Counts,
             isolation: Isolation | None = None, strict: bool = False,
             gauges: Mapping[str, float] | None = None, level: float = 0.95,
             decide: bool = True, n_eff: float | None = None) -> SLOResult:
    """One objective against the histograms, counts (and isolation) of its scope.

    A percentile verdict the exact test leaves undecided, whose threshold lies
    inside its 95% confidence interval, is marked marginal; with `strict` it is
    inconclusive instead. `decide=False` skips the exact test: a trend's window
    wants the percentile's value, which needs 10/(1-q) samples, not a verdict.
    `n_eff` (slo/correlation.py, from the run's intervals) weighs correlated
    samples as that many independent ones, in the test and the interval."""
    r = _judge(objective, histograms, counts, isolation, strict, gauges, level, decide, n_eff)
    return with_n_eff(r, n_eff) if objective.counted else r


def _judge(objective: Objective, histograms: list[HdrHistogram], counts: Counts,
           isolation: Isolation | None, strict: bool, gauges: Mapping[str, float] | None,
           level: float, decide: bool, n_eff: float | None) -> SLOResult:
    o = objective
    interval: tuple[float, float | None] | None = None  # the observed value's, at `level`
    observed: float | None = None
    samples = 0
    reason = ""
    if o.trend is not None or o.metric == RECOVERY_METRIC:
        # Judged across the run's windows and intervals (live.py, after_run.py).
        return _result(o, None, 0, INCONCLUSIVE, "judged across the run's windows or "
                       "intervals, which were not measured here")
    holds: bool | None = None  # the exact test's decision, where it decides
    if o.metric in TIME_METRICS:
        h = merged(histograms)
        samples = h.get_total_count()
        # A failed or dropped request never answered: for end-to-end metrics
        # it counts as slower than any threshold, so errors cannot thin a tail.
        failed = counts.errors + counts.dropped if o.metric in FAILURE_AWARE else 0
        attempts = samples + failed
        if o.quantile is not None and decide and (tail := tail_counts(o, [h], counts)):
            holds = exceedance_decides(*tail, level, n_eff)
        if o.quantile is not None and holds is None and attempts < samples_needed(o.quantile):
            allowed = 1.0 - o.quantile if o.op.startswith("<") else o.quantile
            reason = (f"{attempts} samples do not decide it at {level:.0%}: {o.stat} needs at "
                      f"least {samples_needed(o.quantile)}, or {samples_to_pass(allowed, level):,}"
                      f" with none beyond the threshold")
        elif o.quantile is not None and holds is not True \
                and rank_at(o.quantile * 100.0, attempts) > samples:  # the rank is a failure
            reason = (f"{failed} of {attempts} requests failed or were dropped: more than "
                      f"the {100 * (1 - o.quantile):.3g}% tail, so {o.stat} is a failure")
            verdict = FAIL if o.op.startswith("<") else PASS
            # The interval's low end, where it is an answer (not a failure).
            low = percentile_interval(h, o.quantile, failed, level, n_eff)[0]
            shown = None if math.isinf(low) else low
            if holds is False:  # the exact test decided it
                return _result(o, None, attempts, verdict, reason, (shown, None))
            # More failures than the tail allows, but not so many that the
            # data decide it (19 of 1,179 is 1.6%, its interval [0.67%, 3.2%]):
            # the point estimate's verdict, marginal as any other.
            if strict:
                return _result(o, None, attempts, INCONCLUSIVE, reason + "; the data do not "
                               "decide it (--strict)", (shown, None))
            return _result(o, None, attempts, verdict, reason, (shown, None), marginal=True)
        elif o.stat == "max" and failed:
            return _result(o, None, attempts, FAIL if o.op.startswith("<") else PASS,
                           f"{failed} requests failed or were dropped")
        elif samples == 0:
            reason = "no samples"
        elif o.quantile is not None:
            # The nearest rank among all attempts: failures sit above every answer.
            rank = min(rank_at(o.quantile * 100.0, attempts), samples)
            observed = value_at_rank_us(h, rank) / 1000.0
            interval = percentile_interval(h, o.quantile, failed, level, n_eff)
        elif o.stat == "mean":
            observed = mean_us(h) / 1000.0
        elif o.stat == "max":
            observed = h.get_max_value() / 1000.0
        else:
            observed = h.get_min_value() / 1000.0
        samples = attempts
    elif o.metric == "isolation_ratio":
        iso = isolation or Isolation(spike_phases=[], quiet_phases=[])
        samples = min(iso.samples_spike, iso.samples_quiet)
        if iso.ratio is None:
            reason = ("needs phases where another tenant spikes and quiet phases"
                      if not iso.spike_phases or not iso.quiet_phases
                      else "no latency samples in spike or quiet phases")
        elif samples < samples_needed(0.99):
            reason = f"{samples} samples on one side; a p99 needs at least 1000"
        else:
            observed = iso.ratio
    elif o.metric == "abandon_rate":  # of every request, those left for impatience
        samples, hits = counts.attempts + counts.abandoned, counts.impatient
        if samples == 0:
            reason = "no requests in scope"
        else:
            observed = hits / samples
            interval = share_interval(hits, samples, level, n_eff)
    elif o.metric == "error_rate" or o.metric == "goodput" and o.unit == "%":
        samples = counts.attempts
        hits = counts.errors + counts.dropped if o.metric == "error_rate" else counts.good
        if samples == 0:
            reason = "no requests in scope"
        else:
            observed = hits / samples
            interval = share_interval(hits, samples, level, n_eff)
            if decide and (tail := tail_counts(o, [], counts)):
                holds = exceedance_decides(*tail, level, n_eff)
    elif o.metric in ("throughput", "goodput", "output_tokens_per_s"):  # per second
        served = counts.served or Served(counts.completed, counts.good, counts.output_tokens)
        samples = served.completed
        if counts.duration_s <= 0:
            return _result(o, None, samples, INCONCLUSIVE, "no measured time in scope")
        if samples == 0 and counts.attempts + counts.abandoned == 0:
            # Nothing asked of the server here: no rate to judge (a rebuilt run
            # cut 60 µs into its measured phase read 0 req/s, a FAIL).
            return _result(o, None, 0, INCONCLUSIVE, "no requests in scope")
        done = {"throughput": served.completed, "goodput": served.good,
                "output_tokens_per_s": served.output_tokens}[o.metric]
        observed = done / max(counts.duration_s, 1e-9)
    else:  # a telemetry figure (loadkit.telemetry.derive.slo_values)
        key = o.metric if o.stat is None else f"{o.metric}.{o.stat}"
        observed = (gauges or {}).get(key)
        samples = 1 if observed is not None else 0
        if observed is None:
            reason = f"no telemetry value for {key} (run.json telemetry.sources says why)"
        elif o.unit == "%":  # telemetry gives percent; shares are kept as fractions
            observed /= 100.0
    if observed is None:
        return _result(o, None, samples, INCONCLUSIVE, reason)
    if holds is not None:  # decided by the data: no estimate can be marginal
        return _result(o, observed, samples, PASS if holds else FAIL, reason,
                       interval or (None, None))
    verdict = PASS if OPERATORS[o.op](observed, o.threshold) else FAIL
    if interval is None:
        return _result(o, observed, samples, verdict, reason)
    low, high = interval
    marginal = low <= o.threshold and (high is None or o.threshold <= high)
    if marginal and strict:
        verdict, reason = INCONCLUSIVE, (f"the threshold lies inside the {level:.0%} confidence "
                                         "interval (--strict)")
    return _result(o, observed, samples, verdict, reason, (low, high), marginal)


def tail_counts(o: Objective, hists: Iterable[HdrHistogram], counts: Counts
                ) -> tuple[int, int, int, float] | None:
    """(sure, maybe, n, allowed): of n attempts, how many are on the bad side
    of a percentile or share SLO (surely, and at most: those within the
    histogram's resolution of the threshold), and the share it allows there.
    `p(q) < T` allows P(X >= T) < 1 - q, failures counting above; `p(q) > T`
    allows P(X <= T) < q, failures counting above (on the good side);
    `error_rate < x` allows P(failed) < x; `goodput >= x` allows P(missed)
    < 1 - x. `hists` (of the SLO's metric and scope) are summed: counts
    above a value add up across histograms. None: an SLO judged on a value."""
    if o.metric in TIME_METRICS and o.quantile is not None:
        failed = counts.errors + counts.dropped if o.metric in FAILURE_AWARE else 0
        n = sure = maybe = 0
        for h in hists:
            above, within = count_above(h, round(o.threshold * 1000.0))
            n, sure, maybe = n + h.get_total_count(), sure + above, maybe + within
        if o.op.startswith("<"):
            return sure + failed, maybe + failed, n + failed, 1.0 - o.quantile
        return n - maybe, n - sure, n + failed, o.quantile
    if o.metric == "error_rate" or o.metric == "goodput" and o.unit == "%":
        n = counts.attempts
        hits = counts.errors + counts.dropped if o.metric == "error_rate" else counts.good
        bad, allowed = (hits, o.threshold) if o.op.startswith("<") \
            else (n - hits, 1.0 - o.threshold)
        return bad, bad, n, allowed
    return None


def _result(o: Objective, observed: float | None, samples: int, verdict: Verdict,
            reason: str, interval: tuple[float | None, float | None] = (None, None),
            marginal: bool = False) -> SLOResult:
    return SLOResult(name=o.name, text=o.text, metric=o.metric, scope=Scope(o.scope), op=o.op,
                     threshold=o.threshold, unit=o.unit, observed=observed, samples=samples,
                     verdict=verdict, reason=reason, ci_low=interval[0], ci_high=interval[1],
                     marginal=marginal, abort=o.abort)


def with_n_eff(r: SLOResult, n_eff: float | None) -> SLOResult:
    """`r` with the effective sample size it was judged with."""
    if n_eff is None or not r.samples:
        return r
    return r.model_copy(update={"n_eff": round(min(n_eff, r.samples), 1)})


def evaluate_all(objectives: list[Objective],
                 histograms: Mapping[tuple[str, Scope], list[HdrHistogram]],
                 counts: Mapping[Scope, Counts],
                 isolation: Mapping[str, Isolation] | None = None,
                 strict: bool = False,
                 gauges: Callable[[Scope], Mapping[str, float]] | None = None,
                 judged: Mapping[str, SLOResult] | None = None,
                 n_eff: Mapping[str, float | None] | None = None) -> list[SLOResult]:
    """`histograms[(metric, scope)]`, `counts[scope]`, `isolation[tenant]` and
    `gauges(scope)` come from the result; `judged[name]` are verdicts already
    reached while the run went (windows, aborts), which take precedence;
    `n_eff[name]` the effective sample sizes measured while it went."""
    iso, judged, n_eff = isolation or {}, judged or {}, n_eff or {}
    out = []
    for o in objectives:
        scope = Scope(o.scope)
        out.append(judged.get(o.name) or evaluate(
            o, histograms.get((o.metric, scope), []),
            counts.get(scope, Counts(0, 0, 0, 1.0)),
            iso.get(scope.name) if scope.kind == "tenant" else None, strict,
            gauges(scope) if gauges else None, n_eff=n_eff.get(o.name)))
    return out
