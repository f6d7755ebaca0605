"""One probe: the workload at one load, run by execute() in its own folder.

Each probe is a whole loadkit run (its own simulator when the workload has
no target, its own warm-up, excluded from its verdicts, and its own run.json,
journal and hlog under `probe-NN/`), so any probe can be read or re-rendered
on its own (`loadkit report DIR/probe-03`).

`classify` decides what a probe says about the server: a generator that fell
behind (lateness over the bound), dropped arrivals or sent less than
MIN_SENT of the schedule was the limit itself, and the probe says nothing
about the server; a probe untrusted for another reason says nothing either.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loadkit.capacity.model import Percentiles, ProbeRecord, SloPoint
from loadkit.capacity.scale import at_load, with_warmup
from loadkit.capacity.search import Probe, Status
from loadkit.distributed.fleet import FleetOptions
from loadkit.errors import RunError
from loadkit.outputs import REPORTS
from loadkit.record.journal import JOURNAL_NAME, read_journal
from loadkit.result.model import Counts, RunResult, SLOResult, Verdict
from loadkit.run.execute import INTERRUPTED, RunOptions, execute
from loadkit.workload.loader import LoadedWorkload, Overrides, load_workload
from loadkit.workload.models import Workload
from loadkit.workload.slo_spec import REQUEST_METRICS

if TYPE_CHECKING:
    from loadkit.run.live_view import LiveView

MIN_SENT = 0.97  # of the scheduled arrivals: below this the generator could not keep up
PERCENTILE_METRICS = ("latency", "ttft", "itl", "tpot")
_STATUS = {Verdict.PASS: Status.PASS, Verdict.FAIL: Status.FAIL,
           Verdict.INCONCLUSIVE: Status.INCONCLUSIVE}


@dataclass(frozen=True)
class ProbeSetup:
    """What every probe of one search shares."""

    path: Path
    overrides: Overrides  # --slo, --target, ...; the duration is each probe's own
    out_dir: Path  # the search's folder; probes go in probe-NN/ under it
    strict: bool = False
    cli: bool = False  # Ctrl-C handling and a quiet collector, as `loadkit run` has
    fleet: FleetOptions | None = None  # --workers: the load from several processes
    until_decided: bool = True  # a probe ends once its SLOs are decided, when they can be
    live_view: LiveView | None = None  # --ui: every probe's run on the one live page


def prepare(setup: ProbeSetup, value: float, duration_s: float) -> tuple[LoadedWorkload, float]:
    """The probe's workload at `value`, and its warm-up in seconds."""
    loaded = load_workload(setup.path, dataclasses.replace(setup.overrides, duration=duration_s))
    loaded, warmup_s = with_warmup(loaded, duration_s)
    loaded = at_load(loaded, value)
    w = with_goodput(loaded.workload)
    w = until_decided(w) if setup.until_decided else w
    return dataclasses.replace(loaded, workload=w), warmup_s


def until_decided(w: Workload) -> Workload:
    """A probe ends once its SLOs are decided, when every one can be
    (stop_when_decided): a clear pass or fail takes seconds, not the probe's
    length, and only a close one runs it all."""
    objectives = w.objectives()
    if objectives and all(o.counted for o in objectives):
        return w.model_copy(update={"stop_when_decided": True})
    return w


def run_probe(setup: ProbeSetup, probe: Probe, index: int) -> ProbeRecord:
    folder = setup.out_dir / f"probe-{index:02d}"
    t0 = time.monotonic()
    loaded, warmup_s = prepare(setup, probe.value, probe.duration_s)
    base = {"index": index, "value": probe.value, "duration_s": probe.duration_s,
            "warmup_s": warmup_s, "attempt": probe.attempt,
            "folder": folder.relative_to(setup.out_dir).as_posix()}
    try:
        result, _ = execute(loaded, RunOptions(out_dir=folder, strict=setup.strict,
                                               reports=REPORTS - {"html"},
                                               handle_signals=setup.cli, quiet_gc=setup.cli,
                                               fleet=setup.fleet, live_view=setup.live_view))
    # Unreachable, refused, simulator down: nothing measured; or results that
    # could not be written (a full disk): the message keeps what it measured.
    except RunError as exc:
        return ProbeRecord(**base, status=Status.UNTRUSTED, reasons=[str(exc)],
                           elapsed_s=round(time.monotonic() - t0, 3))
    except KeyboardInterrupt:
        return ProbeRecord(**base, status=Status.UNTRUSTED, reasons=["interrupted"],
                           elapsed_s=round(time.monotonic() - t0, 3))
    good = (good_requests(folder / JOURNAL_NAME, result)
            if loaded.workload.goodput_rule() else None)
    return record_of(result, base, round(time.monotonic() - t0, 3), good)


def with_goodput(w: Workload) -> Workload:
    """Goodput needs per-request rules; a workload without `goodput:` gets one
    per percentile SLO of scope `all` on a per-request metric (`ttft p99 <
    200ms` -> `ttft < 200ms`): a good request met every latency threshold."""
    if w.goodput:
        return w
    rules = sorted({f"{o.metric} {o.op} {o.threshold:g}ms" for o in w.objectives()
                    if o.scope == "all" and o.quantile is not None and o.trend is None
                    and o.metric in REQUEST_METRICS and o.op.startswith("<")})
    return w.model_copy(update={"goodput": rules}) if rules else w


def classify(result: RunResult) -> tuple[Status, list[str]]:
    """What the probe says about the server, and why when it says nothing."""
    c, h, measured_s = result.counts, result.health, max(result.measured_s, 1e-9)
    if cut := [r for r in result.untrusted_reasons if r.startswith(INTERRUPTED)]:
        return Status.UNTRUSTED, cut  # sent part of its schedule: says nothing of either side
    limited = []
    if h.saturated:
        limited.append(f"the generator fell behind its schedule: lateness p99 "
                       f"{h.lateness_p99_ms:.2f} ms over the {h.lateness_bound_ms:g} ms bound")
    if c.dropped:
        limited.append(f"{c.dropped:,} arrivals were dropped at the generator's in-flight cap "
                       "(client.max_in_flight)")
    offered = offered_rps(result)
    if offered and sent(c) / measured_s < MIN_SENT * offered:
        limited.append(f"the generator sent {sent(c) / measured_s:.4g} req/s "
                       f"of the {offered:.4g} req/s scheduled")
    if limited:
        return Status.GENERATOR_LIMITED, limited
    others = [r for r in result.untrusted_reasons if not r.startswith("generator saturated")]
    if others:
        return Status.UNTRUSTED, others
    reasons = [f"{s.name}: {s.reason}" for s in result.slos
               if s.verdict == Verdict.INCONCLUSIVE and s.reason]
    return _STATUS[result.verdict], reasons if result.verdict == Verdict.INCONCLUSIVE else []


def offered_rps(result: RunResult) -> float | None:
    """The schedule's rate over the measured phases (None for closed loops)."""
    if result.closed_loop:
        return None
    measured = {p.name for p in result.phases if not p.warmup}
    n = sum(v for k, v in result.counts.scheduled.items() if k.split("/", 1)[0] in measured)
    return n / result.measured_s if result.measured_s else None


def good_requests(journal: Path, result: RunResult) -> int:
    """Requests that met the goodput rules and ended in the measured time
    (a rate's numerator, as throughput's), summed from the run's journal
    (run.json keeps only the goodput SLOs' shares)."""
    records, _damaged = read_journal(journal)
    measured = {p.name for p in result.phases if not p.warmup}
    return sum(n for rec in records for what, phase, *_key, n in rec.get("served", [])
               if what == "good" and phase in measured)


def record_of(result: RunResult, base: dict, elapsed_s: float, good: int | None
              ) -> ProbeRecord:
    status, reasons = classify(result)
    c, s = result.counts, max(result.measured_s, 1e-9)
    t = result.telemetry.all if result.telemetry else {}

    def figure(key: str) -> float | None:
        v = t.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    latency = {m: Percentiles(p50=x.p50, p90=x.p90, p99=x.p99)
               for m in PERCENTILE_METRICS if (x := result.summary(m)) is not None and x.count}
    offered = offered_rps(result)
    return ProbeRecord(
        **base, status=status, reasons=reasons, run_id=result.run_id, elapsed_s=elapsed_s,
        decided_s=round(result.measured_s, 3) if result.decided else None,
        offered_rps=round(offered, 3) if offered is not None else None,
        sent_rps=round(sent(c) / s, 3),
        throughput_rps=result.throughput.requests_per_s,
        goodput_rps=round(good / s, 3) if good is not None else None,
        output_tokens_per_s=result.throughput.output_tokens_per_s,
        completed=c.completed, errors=c.errors, dropped=c.dropped,
        lateness_p99_ms=result.health.lateness_p99_ms, saturated=result.health.saturated,
        latency=latency,
        slos=slo_points(result.slos),
        gpu_util_mean=figure("gpu.util.mean"), idle_silicon=figure("idle_silicon"),
        energy_per_request_j=figure("energy_per_request"),
        cost_per_1m_output_tokens=figure("cost_per_1m_output_tokens"),
        cost_per_1k_requests=figure("cost_per_1k_requests"),
        energy_per_1k_output_tokens_j=figure("energy_per_1k_output_tokens"),
        telemetry_simulated=bool(result.telemetry and result.telemetry.simulated),
        split=result.why.decomposition if result.why else None,
        causes=result.why.causes if result.why else [])


def slo_points(slos: list[SLOResult]) -> list[SloPoint]:
    return [SloPoint(name=x.name, text=x.text, metric=x.metric, op=x.op, threshold=x.threshold,
                     unit=x.unit, observed=x.observed, ci_low=x.ci_low, ci_high=x.ci_high,
                     marginal=x.marginal, verdict=x.verdict, reason=x.reason) for x in slos]


def sent(c: Counts) -> int:
    """Requests the generator sent and saw settled: answered, failed, or left
    by their client (an impatient client's request was sent all the same)."""
    return c.completed + c.errors + sum(c.abandoned.values())
