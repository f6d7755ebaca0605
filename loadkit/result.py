"""RunResult: the one serialisable truth of a run (what `run.json` holds).

Built from the recorder's cumulative histograms and counters after the run.
Every renderer reads the plain dict this produces, so `report` can later
re-render from `run.json` alone.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from hdrh.histogram import HdrHistogram

from loadkit.errors import ErrorKind
from loadkit.record.histogram import encode, merged, summary_ms
from loadkit.record.hlog import tag_for
from loadkit.record.recorder import Recorder
from loadkit.slo.evaluate import Counts, SLOResult, evaluate_all, overall
from loadkit.workload.slo_spec import Objective

SCHEMA_VERSION = 1
MEASURE = "measure"


def scoped_histograms(recorder: Recorder) -> dict[tuple[str, str], list[HdrHistogram]]:
    """(metric, scope) -> histograms of the measured phase; scope `all`,
    `tenant:<name>` or `scenario:<name>`."""
    out: dict[tuple[str, str], list[HdrHistogram]] = defaultdict(list)
    for (metric, phase, scenario, tenant), h in recorder.cumulative.items():
        if phase != MEASURE:
            continue
        for scope in ("all", f"tenant:{tenant}", f"scenario:{scenario}"):
            out[(metric, scope)].append(h)
    return out


def scoped_counts(recorder: Recorder, dropped: Counter, duration_s: float) -> dict[str, Counts]:
    completed: Counter = Counter()
    errors: Counter = Counter()
    drops: Counter = Counter()
    for source, target in ((recorder.completed, completed), (dropped, drops)):
        for (phase, scenario, tenant), n in source.items():
            if phase == MEASURE:
                for scope in ("all", f"tenant:{tenant}", f"scenario:{scenario}"):
                    target[scope] += n
    for (kind, phase, scenario, tenant), n in recorder.errors.items():
        if phase == MEASURE:
            for scope in ("all", f"tenant:{tenant}", f"scenario:{scenario}"):
                errors[scope] += n
    scopes = set(completed) | set(errors) | set(drops) | {"all"}
    return {s: Counts(completed[s], errors[s], drops[s], duration_s) for s in scopes}


def build_result(*, meta: dict, recorder: Recorder, dropped: Counter, unfinished: int,
                 objectives: list[Objective], health: dict, duration_s: float,
                 lateness_bound_ms: float, allow_saturated: bool,
                 extra_untrusted: list[str] = ()) -> dict:
    """Evaluate SLOs and assemble the run.json document."""
    hists = scoped_histograms(recorder)
    counts = scoped_counts(recorder, dropped, duration_s)
    slos: list[SLOResult] = evaluate_all(objectives, hists, counts)
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

    errors_by_kind = Counter()
    for (kind, phase, _s, _t), n in recorder.errors.items():
        if phase == MEASURE:
            errors_by_kind[kind] += n
    total = counts["all"]
    tokens = sum(n for (phase, _s, _t), n in recorder.output_tokens.items() if phase == MEASURE)
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
                                           if p != MEASURE)},
        "throughput": {"requests_per_s": round(total.completed / duration_s, 3),
                       "output_tokens_per_s": round(tokens / duration_s, 3)},
        "errors": {"by_kind": {k.value: errors_by_kind.get(k.value, 0) for k in ErrorKind},
                   "examples": dict(recorder.error_examples)},
        "tokens": {"output_total": tokens, "source": dict(recorder.token_sources)},
        "health": {**health, "lateness_p99_ms": lateness_p99,
                   "lateness_bound_ms": lateness_bound_ms, "saturated": saturated},
        "series": dict(series),
        "timeseries": [vars(iv) for iv in recorder.intervals],
        "histograms": {tag_for(*k): encode(h) for k, h in sorted(recorder.cumulative.items())},
    }
