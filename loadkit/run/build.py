"""The recorder's totals by scope: the measured parts of a RunResult.

Scopes: `all`, `tenant:<name>` and `scenario:<name>` cover the measured
phases (warm-ups excluded); `phase:<name>` covers one phase, warm-ups too.
The SLO verdicts (loadkit.slo), isolation (loadkit.slo.isolation) and
telemetry (loadkit.telemetry.derive) parts are built by their own modules;
execute.py puts the parts together.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from loadkit.errors import ErrorKind
from loadkit.record.histogram import HdrHistogram, encode, merged, percentile_us, summary_ms
from loadkit.record.hlog import tag_for
from loadkit.record.recorder import Recorder
from loadkit.result.model import (
    ALL,
    Counts,
    Errors,
    Health,
    Interval,
    Isolation,
    Scope,
    Sessions,
    Summary,
    Throughput,
    Tokens,
)
from loadkit.slo.evaluate import Counts as ScopeCounts
from loadkit.slo.evaluate import Served
from loadkit.slo.isolation import isolation
from loadkit.slo.scopes import Phases


class Measured:
    """What the recorder holds, merged per scope of the run's phases."""

    def __init__(self, recorder: Recorder, phases: Phases):
        self.recorder, self.phases = recorder, phases
        hists: dict[tuple[str, Scope], list[HdrHistogram]] = defaultdict(list)
        for (metric, phase, scenario, tenant), h in recorder.cumulative.items():
            for scope in phases.scopes(phase, scenario, tenant):
                hists[(metric, scope)].append(h)
        self.histograms = dict(hists)
        self.counts = self._scoped_counts()

    def _scoped_counts(self) -> dict[Scope, ScopeCounts]:
        r, phases = self.recorder, self.phases
        errors: Counter = Counter()
        for (_kind, *key), n in r.errors.items():
            errors[tuple(key)] += n
        abandoned: Counter = Counter()
        impatient: Counter = Counter()
        for (rule, *key), n in r.abandoned.items():
            abandoned[tuple(key)] += n
            impatient[tuple(key)] += n if rule == "patience" else 0
        sources = {"completed": r.completed, "dropped": r.dropped, "errors": errors,
                   "good": r.good, "output_tokens": r.output_tokens, "abandoned": abandoned,
                   "impatient": impatient}
        totals: dict[str, Counter] = {name: Counter() for name in sources}
        for name, source in sources.items():
            for (phase, scenario, tenant), n in source.items():
                for scope in phases.scopes(phase, scenario, tenant):
                    totals[name][scope] += n
        served: dict[str, Counter] = {"completed": Counter(), "good": Counter(),
                                      "tokens": Counter()}
        for (what, phase, scenario, tenant), n in r.served.items():
            for scope in phases.scopes(phase, scenario, tenant):
                served[what][scope] += n
        scopes = set().union(*totals.values(), *served.values()) | {ALL}
        return {s: ScopeCounts(totals["completed"][s], totals["errors"][s],
                                   totals["dropped"][s], phases.seconds(s),
                                   totals["good"][s], totals["output_tokens"][s],
                                   totals["abandoned"][s], totals["impatient"][s],
                                   Served(served["completed"][s], served["good"][s],
                                          served["tokens"][s]))
                for s in scopes}

    def series(self) -> dict[str, dict[Scope, Summary]]:
        out: dict[str, dict[Scope, Summary]] = defaultdict(dict)
        for (metric, scope), hs in sorted(self.histograms.items()):
            out[metric][scope] = Summary.model_validate(summary_ms(merged(hs)))
        return dict(out)

    def lateness_p99_ms(self) -> float:
        h = merged(self.histograms.get(("lateness", ALL), []))
        return percentile_us(h, 99.0) / 1000.0 if h.get_total_count() else 0.0

    def request_counts(self, scheduled: Counter, unfinished: int) -> Counts:
        total = self.counts[ALL]
        return Counts(completed=total.completed, errors=total.errors, dropped=total.dropped,
                      unfinished=unfinished,
                      warmup_completed=sum(n for (p, _s, _t), n in
                                           self.recorder.completed.items()
                                           if p not in self.phases.measured),
                      scheduled={f"{p}/{t}": n for (p, t), n in sorted(scheduled.items())},
                      abandoned=self._measured(self.recorder.abandoned),
                      tokens_read=self._in_measured(self.recorder.tokens_read),
                      retried=self._in_measured(self.recorder.retried),
                      sent_bytes=self._in_measured(self.recorder.sent_bytes))

    def sessions(self) -> Sessions | None:
        if not self.recorder.sessions:
            return None
        by = self._measured(self.recorder.sessions)
        return Sessions(started=by.get("started", 0), completed=by.get("completed", 0),
                        failed=by.get("failed", 0), abandoned=by.get("abandoned", 0),
                        cut=by.get("cut", 0))

    def output_tokens(self) -> int:
        return self._in_measured(self.recorder.output_tokens)

    def _in_measured(self, counter: Counter) -> int:
        """A (phase, scenario, tenant) counter's total over the measured phases."""
        return sum(n for (phase, _s, _t), n in counter.items() if phase in self.phases.measured)

    def throughput(self) -> Throughput:
        """What the server delivered in the measured time: the requests that
        ended in it (Served), whichever phase they were sent for."""
        duration = max(self.phases.measured_s, 1e-9)
        served = self.counts[ALL].served or Served()
        return Throughput(requests_per_s=round(served.completed / duration, 3),
                          output_tokens_per_s=round(served.output_tokens / duration, 3))

    def errors(self) -> Errors:
        by_kind = self._measured(self.recorder.errors)
        return Errors(by_kind={k.value: by_kind.get(k.value, 0) for k in ErrorKind},
                      examples=dict(self.recorder.error_examples))

    def tokens(self) -> Tokens:
        return Tokens(output_total=self.output_tokens(),
                      source=dict(self.recorder.token_sources),
                      itl_source=dict(self.recorder.itl_sources),
                      prompt_total=sum(self.recorder.prompt_tokens.values()) or None,
                      reasoning_total=self._in_measured(self.recorder.reasoning_tokens) or None,
                      cached_total=(sum(self.recorder.cached_tokens.values())
                                    if self.recorder.cached_tokens else None),
                      expected_cached_total=(sum(self.recorder.expected_cached.values())
                                             if self.recorder.expected_cached else None),
                      prompt_drift=(round(sum(self.recorder.prompt_matched.values()) / asked - 1, 4)
                                    if (asked := sum(self.recorder.prompt_asked.values()))
                                    else None),
                      finish_reason=self._measured(self.recorder.finish_reasons),
                      no_done=sum(self._measured(self.recorder.stream_notes).values()))

    def _measured(self, counter: Counter) -> dict[str, int]:
        """A (what, phase, scenario, tenant) counter summed by what, over the
        measured phases."""
        by: Counter = Counter()
        for (what, phase, _s, _t), n in counter.items():
            if phase in self.phases.measured:
                by[what] += n
        return dict(sorted(by.items()))

    def timeseries(self) -> list[Interval]:
        return list(self.recorder.intervals)

    def encoded_histograms(self) -> dict[str, str]:
        return {tag_for(*k): encode(h) for k, h in sorted(self.recorder.cumulative.items())}

    def tenant_isolation(self, scheduled: Counter,
                         declared: dict[tuple[str, str], float | None]
                         ) -> dict[str, Isolation]:
        """Multi-tenant runs only. Declared rates decide who spikes where
        (sampled counts are noisy in short phases); closed loops and traces
        fall back to what was sent."""
        tenants = sorted({t for (t, _p) in declared})
        if len(tenants) < 2:
            return {}
        phases = self.phases
        rates = {t: {p: rate if (rate := declared.get((t, p))) is not None
                     else scheduled[(p, t)] / max(phases.duration[p], 1e-9)
                     for p in phases.measured}
                 for t in tenants}
        latency: dict[tuple[str, str], HdrHistogram] = {}
        for (metric, phase, _s, tenant), h in self.recorder.cumulative.items():
            if metric == "latency":
                key = (tenant, phase)
                latency[key] = merged([latency[key], h]) if key in latency else h
        return isolation(rates, latency)


def health(figures: dict[str, float | None], lateness_p99_ms: float,
           bound_ms: float) -> Health:
    """The generator's CPU and steal (HealthProbe) and whether it kept up."""
    return Health(cpu_percent=figures.get("cpu_percent"),
                  steal_percent=figures.get("steal_percent"),
                  lateness_p99_ms=lateness_p99_ms, lateness_bound_ms=bound_ms,
                  saturated=lateness_p99_ms > bound_ms)


def saturation_reason(h: Health) -> str | None:
    if not h.saturated:
        return None
    return (f"generator saturated: lateness p99 {h.lateness_p99_ms:.2f} ms exceeds the "
            f"{h.lateness_bound_ms:g} ms bound, so tails would be wrong")
