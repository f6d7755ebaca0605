"""A RunResult from a finished (or rebuilt) run: the one place the parts meet.

`execute.py` calls it when a run ends; `run/recover.py` when `loadkit
report` rebuilds a run that died from its journal. Each part is built by the
module that owns it: the recorder's totals per scope (`build.Measured`),
isolation, SLO verdicts (`slo.evaluate`, `slo.live`, `slo.after_run`),
telemetry (`telemetry.derive`); this module only puts them together.
"""

from __future__ import annotations

from collections import Counter

from loadkit.errors import printable
from loadkit.record.intervals import bounded
from loadkit.record.recorder import Recorder
from loadkit.result.model import (
    Aborted,
    DecidedEarly,
    Incomplete,
    Part,
    PhaseInfo,
    RunResult,
    Telemetry,
    Verdict,
    WorkloadInfo,
    as_ran,
    run_verdict,
)
from loadkit.run.build import Measured, health, saturation_reason
from loadkit.slo.after_run import judge_after_run
from loadkit.slo.cache_state import cache_state
from loadkit.slo.evaluate import evaluate_all
from loadkit.slo.live import LiveJudge
from loadkit.slo.reclaim import explain_missing, reclaim, slo_figures
from loadkit.slo.recovery import phase_rates
from loadkit.slo.scopes import Phases
from loadkit.slo.why import explain
from loadkit.telemetry.derive import slo_values
from loadkit.workload.slo_spec import Objective


class RunFacts(Part):
    """What a run knows of itself besides its measurements. Written as the
    journal's header too, so a rebuilt run has the same facts."""

    run_id: str
    loadkit_version: str
    host: str
    git_commit: str | None
    started_at: str
    target: str
    closed_loop: bool
    workload: WorkloadInfo
    phases: list[PhaseInfo]
    interval_s: float
    lateness_bound_ms: float
    strict: bool
    allow_saturated: bool
    # (tenant, phase, req/s) as declared; None where it is not declared (traces, closed loops)
    declared_rates: list[tuple[str, str, float | None]]
    cache_reset: bool = False  # `cache: cold`: the server's prefix cache was reset first


def assemble(facts: RunFacts, *, finished_at: str, recorder: Recorder, scheduled: Counter,
             unfinished: int, objectives: list[Objective], judge: LiveJudge | None,
             telemetry: Telemetry, generator: dict[str, float | None], ended_s: float | None,
             stop_reason: str | None = None, incomplete: Incomplete | None = None) -> RunResult:
    """`generator`: the HealthProbe's CPU and steal figures; `ended_s`: when a run
    cut short ended (it is judged over the time it ran); `stop_reason` and
    `incomplete` make the result untrusted."""
    phases = facts.phases
    ran = as_ran(phases, ended_s)  # judged over the time it ran
    measured = Measured(recorder, Phases(ran))
    declared = {(t, p): rate for t, p, rate in facts.declared_rates}
    isolation = measured.tenant_isolation(scheduled, declared)
    # Trends of gauges and recovery times are judged on the whole run's series.
    after_run = judge_after_run(objectives, measured.timeseries(), ran, telemetry,
                                phase_rates(declared, scheduled,
                                            {p.name: p.duration_s for p in ran}),
                                facts.interval_s)
    judged = judge.results() if judge is not None else {}
    left = reclaim(telemetry, sum(recorder.output_tokens.values())
                   + sum(recorder.tokens_received.values()), sum(recorder.abandoned.values()),
                   recorder.reclaim)
    slos = evaluate_all(objectives, measured.histograms, measured.counts, isolation,
                        facts.strict, lambda scope: {**slo_values(telemetry, scope),
                                                     **(slo_figures(left) if scope == "all"
                                                        else {})},
                        {**judged, **after_run}, judge.n_eff() if judge is not None else None)
    slos = explain_missing(slos, left)
    generator_health = health(generator, measured.lateness_p99_ms(), facts.lateness_bound_ms)
    untrusted = [printable(reason) for reason in (  # fail-fast's may quote a server
        incomplete.reason if incomplete else None, stop_reason,
        None if facts.allow_saturated else saturation_reason(generator_health)) if reason]
    aborted = None
    if judge is not None and judge.breach is not None:
        slo, at_s = judge.breach
        aborted = Aborted(slo=slo.name, at_s=round(at_s, 3), observed=slo.observed,
                          reason="a clear breach of an `abort: true` SLO")
    tokens = measured.tokens()
    cache = cache_state(tokens, facts.cache_reset)
    counts = measured.request_counts(scheduled, unfinished)
    verdict, _ = run_verdict(Verdict.overall([s.verdict for s in slos]), counts, cache)
    decided = None
    if judge is not None and judge.decided is not None:
        d = judge.decided
        decided = DecidedEarly(at_s=round(d.at_s, 3), verdicts=d.verdicts, reason=d.reason)
    return RunResult(
        run_id=facts.run_id, loadkit_version=facts.loadkit_version, host=facts.host,
        git_commit=facts.git_commit, started_at=facts.started_at, finished_at=finished_at,
        target=facts.target, closed_loop=facts.closed_loop, workload=facts.workload,
        phases=phases, aborted=aborted, decided=decided,
        ended_s=None if ended_s is None else round(ended_s, 3), verdict=verdict,
        trusted=not untrusted, untrusted_reasons=untrusted, slos=slos,
        counts=counts,
        throughput=measured.throughput(), errors=measured.errors(), tokens=tokens,
        sessions=measured.sessions(),
        health=generator_health, isolation=isolation, series=measured.series(),
        timeseries=bounded(measured.timeseries()), histograms=measured.encoded_histograms(),
        telemetry=telemetry, incomplete=incomplete,
        why=explain(measured.timeseries(), phases, telemetry, slos, generator_health),
        cache=cache, reclaim=left)
