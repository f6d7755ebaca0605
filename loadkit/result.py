"""RunResult: the one serialisable truth of a run (what `run.json` holds).

Built from the recorder's cumulative histograms and counters after the run.
Every renderer reads the plain dict this produces, so `report` can later
re-render from `run.json` alone.

Scopes: `all`, `tenant:<name>` and `scenario:<name>` cover the measured
phases (warm-ups excluded); `phase:<name>` covers one phase, warm-ups too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable

from hdrh.histogram import HdrHistogram

from loadkit.errors import ErrorKind
from loadkit.record.histogram import encode, merged, summary_ms
from loadkit.record.hlog import tag_for
from loadkit.record.recorder import Recorder
from loadkit.slo.evaluate import Counts, SLOResult, evaluate_all, overall
from loadkit.slo.isolation import isolation
from loadkit.slo.scopes import Phases
from loadkit.workload.slo_spec import Objective

SCHEMA_VERSION = 1


def scoped_histograms(recorder: Recorder, phases: Phases
                      ) -> dict[tuple[str, str], list[HdrHistogram]]:
    out: dict[tuple[str, str], list[HdrHistogram]] = defaultdict(list)
    for (metric, phase, scenario, tenant), h in recorder.cumulative.items():
        for scope in phases.scopes(phase, scenario, tenant):
            out[(metric, scope)].append(h)
    return out


def scoped_counts(recorder: Recorder, phases: Phases) -> dict[str, Counts]:
    errors: Counter = Counter()
    for (_kind, *key), n in recorder.errors.items():
        errors[tuple(key)] += n
    sources = [("completed", recorder.completed), ("dropped", recorder.dropped),
               ("errors", errors), ("good", recorder.good),
               ("output_tokens", recorder.output_tokens)]
    totals: dict[str, Counter] = {name: Counter() for name, _ in sources}
    for name, source in sources:
        for (phase, scenario, tenant), n in source.items():
            for scope in phases.scopes(phase, scenario, tenant):
                totals[name][scope] += n
    scopes = set().union(*totals.values()) | {"all"}
    return {s: Counts(totals["completed"][s], totals["errors"][s], totals["dropped"][s],
                      phases.duration.get(s.removeprefix("phase:"), phases.measured_s)
                      if s.startswith("phase:") else phases.measured_s,
                      totals["good"][s], totals["output_tokens"][s])
            for s in scopes}


def tenant_isolation(recorder: Recorder, scheduled: Counter, phases: Phases,
                     declared: dict[tuple[str, str], float | None]) -> dict[str, dict]:
    """Declared rates decide who spikes where (sampled counts are noisy in
    short phases); closed loops and traces fall back to what was sent."""
    tenants = sorted({t for (t, _p) in declared})
    rates = {t: {p: declared.get((t, p)) if declared.get((t, p)) is not None
                 else scheduled[(p, t)] / max(phases.duration[p], 1e-9)
                 for p in phases.measured}
             for t in tenants}
    latency: dict[tuple[str, str], HdrHistogram] = {}
    for (metric, phase, _s, tenant), h in recorder.cumulative.items():
        if metric == "latency":
            key = (tenant, phase)
            latency[key] = merged([latency[key], h]) if key in latency else h
    return isolation(rates, latency)


def build_result(*, meta: dict, recorder: Recorder, scheduled: Counter,
                 declared_rates: dict[tuple[str, str], float | None], unfinished: int,
                 objectives: list[Objective], health: dict,
                 lateness_bound_ms: float, allow_saturated: bool, strict: bool = False,
                 extra_untrusted: list[str] = (), judged: dict[str, SLOResult] | None = None,
                 gauges: Callable[[str], dict[str, float]] | None = None,
                 stopped_early: bool = False,
                 telemetry: dict | None = None) -> dict:
    """Evaluate SLOs and assemble the run.json document. `judged` holds the
    verdicts reached while the run went (windows, abort); `gauges(scope)`
    the telemetry figures of a scope."""
    # A run stopped early (abort, Ctrl-C) is judged over the time it ran.
    ended_s = (recorder.intervals[-1].end_s if recorder.intervals and stopped_early
               else None)
    phases = Phases(meta["phases"], ended_s)
    hists = scoped_histograms(recorder, phases)
    counts = scoped_counts(recorder, phases)
    several = len({t for (t, _p) in declared_rates}) > 1
    iso = tenant_isolation(recorder, scheduled, phases, declared_rates) if several else {}
    slos: list[SLOResult] = evaluate_all(objectives, hists, counts, iso, strict, gauges, judged)
    verdict = overall(slos)

    lateness = merged(hists.get(("lateness", "all"), []))
    lateness_p99 = (lateness.get_value_at_percentile(99.0) / 1000.0
                    if lateness.get_total_count() else 0.0)
    saturated = lateness_p99 > lateness_bound_ms
    untrusted = list(extra_untrusted)
    if saturated and not allow_saturated:
        untrusted.append(f"generator saturated: lateness p99 {lateness_p99:.2f} ms exceeds "
                         f"the {lateness_bound_ms:g} ms bound, so tails would be wrong")

    series: dict[str, dict[str, dict]] = defaultdict(dict)
    for (metric, scope), hs in sorted(hists.items()):
        series[metric][scope] = summary_ms(merged(hs))

    errors_by_kind: Counter = Counter()
    for (kind, phase, _s, _t), n in recorder.errors.items():
        if phase in phases.measured:
            errors_by_kind[kind] += n
    total = counts["all"]
    tokens = sum(n for (phase, _s, _t), n in recorder.output_tokens.items()
                 if phase in phases.measured)
    duration = max(phases.measured_s, 1e-9)
    return {
        "schema_version": SCHEMA_VERSION,
        **meta,
        "verdict": verdict,
        "trusted": not untrusted,
        "untrusted_reasons": untrusted,
        "slos": [r.to_dict() for r in slos],
        "counts": {"completed": total.completed, "errors": total.errors,
                   "dropped": total.dropped, "unfinished": unfinished,
                   "warmup_completed": sum(n for (p, _s, _t), n in recorder.completed.items()
                                           if p not in phases.measured),
                   "scheduled": {f"{p}/{t}": n for (p, t), n in sorted(scheduled.items())}},
        "throughput": {"requests_per_s": round(total.completed / duration, 3),
                       "output_tokens_per_s": round(tokens / duration, 3)},
        "errors": {"by_kind": {k.value: errors_by_kind.get(k.value, 0) for k in ErrorKind},
                   "examples": dict(recorder.error_examples)},
        "tokens": {"output_total": tokens, "source": dict(recorder.token_sources)},
        "health": {**health, "lateness_p99_ms": lateness_p99,
                   "lateness_bound_ms": lateness_bound_ms, "saturated": saturated},
        "isolation": iso,
        "series": dict(series),
        "timeseries": [vars(iv) for iv in recorder.intervals],
        "histograms": {tag_for(*k): encode(h) for k, h in sorted(recorder.cumulative.items())},
        # loadkit.telemetry.derive.telemetry_section (execute.py builds it)
        "telemetry": telemetry,
    }
