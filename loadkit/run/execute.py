"""One run, end to end: target, pre-flight, engine, result, reports.

This is the seam the CLI (and later the pytest plugin and the Locust driver)
call. The engine, the simulator process and the output files are its only
I/O; everything it decides is computed by pure modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import platform
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loadkit import __version__
from loadkit.arrivals import Slot, closed_loops, phase_starts, schedule
from loadkit.arrivals.processes import mean_rate
from loadkit.distributed.fleet import Fleet, FleetOptions
from loadkit.engine import Engine, Plan, Progress
from loadkit.engine.failfast import FailFastWatch
from loadkit.engine.loop import quiet_collector, run_async
from loadkit.engine.preflight import check_target, discover_model, reset_prefix_cache
from loadkit.engine.probe import credentials_source, explain, probe
from loadkit.errors import ExitCode, InputError, RunError, TargetRejected, gate
from loadkit.interrupts import Interrupts
from loadkit.outputs import REPORTS, write_all
from loadkit.protocols.kserve_first import first_contact, needs_grpc
from loadkit.protocols.media import media_sent, plan_ledgers
from loadkit.protocols.plan import plan_for
from loadkit.protocols.registry import identity
from loadkit.record.health import HealthProbe
from loadkit.record.hlog import HlogWriter
from loadkit.record.journal import HLOG_NAME, JOURNAL_NAME, IntervalJournal, Journal
from loadkit.record.recorder import Recorder
from loadkit.record.worker import RecorderThread
from loadkit.result.model import MediaSent, Note, PhaseInfo, RunResult, Verdict, WorkloadInfo
from loadkit.run.assemble import RunFacts, assemble
from loadkit.run.embedded_sim import embedded_simulator
from loadkit.run.live_report import live_report
from loadkit.served import is_loopback
from loadkit.slo.live import LiveJudge
from loadkit.slo.scopes import Phases
from loadkit.telemetry.aborts import AbortFeed
from loadkit.telemetry.collector import Session as TelemetrySession
from loadkit.telemetry.collector import telemetry_session
from loadkit.telemetry.derive import telemetry_section
from loadkit.urls import without_credentials
from loadkit.workload.kserve_spec import KServeScenario
from loadkit.workload.loader import LoadedWorkload
from loadkit.workload.models import Workload
from loadkit.workload.public import public_spec
from loadkit.workload.scenarios import HttpScenario

if TYPE_CHECKING:
    from loadkit.run.exporter import LiveMetrics
    from loadkit.run.live_view import LiveView


INTERRUPTED = "interrupted"  # how an untrusted reason says the run was cut short


@dataclass(frozen=True)
class RunOptions:
    out_dir: Path | None = None  # default reports/<run-id>/
    allow_saturated: bool = False
    strict: bool = False  # a marginal percentile verdict is inconclusive
    # The reports beside run.json (report.REPORTS: md, junit, html); callers
    # that read run.json only leave out html (its charts cost ~1 s).
    reports: frozenset[str] = REPORTS
    # Process-wide settings, off for library callers and the pytest plugin;
    # the CLI turns both on. Ctrl-C / SIGTERM end the run cleanly, reports written:
    handle_signals: bool = False
    # Freeze the heap and collect rarely while the load runs: collector pauses
    # land on the event loop as lateness (see quiet_collector).
    quiet_gc: bool = False
    # Rewrite report.html this often (seconds) while the run goes, from the
    # journal, in a child process at idle priority (run/live_report.py); 0: never.
    live_report_s: float = 0.0
    # Live Prometheus metrics of the run (run/exporter.py), fed at each
    # interval; the caller serves and closes it (`loadkit run --metrics-port`).
    metrics: LiveMetrics | None = None
    # Several worker processes or machines carry the load (distributed/).
    fleet: FleetOptions | None = None
    # The live web view (run/live_view.py), fed at each interval; the caller
    # serves and closes it (`loadkit run --ui`). Its notes go into run.json.
    live_view: LiveView | None = None


def exit_code(result: RunResult, inconclusive: str = "fail") -> ExitCode:
    return gate(trusted=result.trusted, failed=result.verdict == Verdict.FAIL,
                undecided=result.verdict == Verdict.INCONCLUSIVE, inconclusive=inconclusive)


def execute(loaded: LoadedWorkload, options: RunOptions = RunOptions(),
            on_interval: Callable[[Progress], None] | None = None,
            on_start: Callable[[str, Path, list[str]], None] | None = None
            ) -> tuple[RunResult, Path]:
    """Run the workload; return (its result, the output folder).

    `on_start(target, out_dir, notes)` is called once the target is known to
    answer and accept the run's requests, just before the clock starts."""
    w = loaded.workload
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    out_dir = options.out_dir or Path("reports") / run_id
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {out_dir}: {exc.strerror or exc}") from None
    with contextlib.ExitStack() as stack:
        if created:  # a run that fails before writing anything leaves no empty folder
            stack.callback(_remove_if_empty, out_dir)
        base_url: str
        if w.target is None:
            base_url = stack.enter_context(embedded_simulator(w.simulator,
                                                              grpc=needs_grpc(loaded)))
            target_label = f"embedded simulator ({base_url})"
        else:
            base_url = w.target
            target_label = without_credentials(w.target)
            check_target(base_url, w.client)
        loaded, notes = _with_models(loaded, base_url)
        plan = plan_for(loaded, base_url)
        if loaded.workload.client.probe:
            notes += _probe(plan, loaded.workload)
        if w.cache == "cold":  # after the probe: its prompts must not warm the cache
            notes.append(reset_prefix_cache(base_url, w.client,
                                            identity(w.scenarios[0], w.all_tenants[0],
                                                     os.environ)))
        fleet = stack.enter_context(_fleet(options.fleet, w)) if options.fleet else None
        if fleet is not None:
            fleet.gather()
            notes.append(f"{len(fleet.members)} workers joined the master on port {fleet.port}")
            notes += [f"refused worker {who}" for who in fleet.refused]
        if on_start:
            on_start(target_label, out_dir, notes)
        # From here a first Ctrl-C/SIGTERM stops the run cleanly, a second exits at once.
        interrupts = stack.enter_context(Interrupts(str(out_dir))) \
            if options.handle_signals else None
        return _run(loaded, plan, target_label, run_id, out_dir, options, on_interval,
                    interrupts, fleet), out_dir


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty: it holds what was measured
        folder.rmdir()


def _fleet(options: FleetOptions, w: Workload) -> Fleet:
    if closed_loops(w):
        raise InputError("closed-loop phases are not distributed: run them in one process")
    if w.target is None and not options.local and not is_loopback(options.bind_host):
        raise InputError("the embedded simulator listens on the master's loopback only: "
                         "give the workers a --target they can reach")
    return Fleet(options)


def _with_models(loaded: LoadedWorkload, base_url: str) -> tuple[LoadedWorkload, list[str]]:
    """Scenarios that name no model get the one the target lists."""
    loaded, notes = first_contact(loaded, base_url)  # KServe v2: models, readiness, tensors
    w = loaded.workload
    unnamed = [i for i, s in enumerate(w.scenarios)
               if not isinstance(s, (HttpScenario, KServeScenario)) and s.model is None]
    if not unnamed:
        return loaded, notes
    model = discover_model(base_url, w.client,
                           identity(w.scenarios[unnamed[0]], w.all_tenants[0], os.environ),
                           credentials_source(w, 0, unnamed[0]))
    scenarios = [s.model_copy(update={"model": model}) if i in unnamed else s
                 for i, s in enumerate(w.scenarios)]
    resolved = dataclasses.replace(loaded, workload=w.model_copy(update={"scenarios": scenarios}))
    return resolved, [*notes, f"model {model} (from the target's /v1/models)"]


def _probe(plan: Plan, w: Workload) -> list[str]:
    """Stop before the clock starts if the target rejects what the run sends."""
    failures = run_async(probe(plan, w))
    rejected = [explain(f, w) for f in failures if f.rejected]
    if rejected:
        raise TargetRejected("the target rejects this run's requests (probe before the "
                             "clock started; --no-probe skips it):\n  " + "\n  ".join(rejected))
    return [f"probe: {explain(f, w)}" for f in failures]


def _run(loaded: LoadedWorkload, plan: Plan, target_label: str, run_id: str,
         out_dir: Path, options: RunOptions,
         on_interval: Callable[[Progress], None] | None,
         interrupts: Interrupts | None = None, fleet: Fleet | None = None) -> RunResult:
    w = loaded.workload
    facts = _facts(loaded, plan, run_id, target_label, options)
    phases, objectives = facts.phases, w.objectives()
    judge = LiveJudge(objectives, Phases(phases), options.strict,
                      on_breach=lambda slo, _at: driver.halt_threadsafe(
                          f"the abort SLO `{slo.name}`"),
                      interval_s=w.interval,
                      on_decided=(lambda d: driver.finish_threadsafe(d.reason))
                      if w.stop_when_decided else None)
    whole_run = HealthProbe.start()
    # Telemetry samplers run on their own threads, opened before the run's zero
    # (that costs milliseconds), and stop when the block ends, however it ends.
    with open(out_dir / HLOG_NAME, "wb", buffering=0) as hlog_file, \
            telemetry_session(w.telemetry, plan.base_url if w.target is None else None) as tele, \
            Journal(out_dir / JOURNAL_NAME, _journal_header(facts, plan, objectives, tele),
                    sync=[hlog_file]) as journal, \
            live_report(out_dir, options.live_report_s if "html" in options.reports else 0.0), \
            quiet_collector() if options.quiet_gc else contextlib.nullcontext():
        # Start a little in the future so the first slots are not already late;
        # a fleet's workers start at one instant, when every shard has arrived.
        start_at = fleet.start(loaded, plan.base_url) if fleet else time.time() + 0.05
        start_ns = time.monotonic_ns() + int((start_at - time.time()) * 1e9)
        recorder = Recorder(start_ns, HlogWriter(hlog_file, start_at),
                            goodput=tuple((c.metric, c.op, c.threshold_ns)
                                          for c in w.goodput_rule()),
                            phases=tuple((p.name, p.duration) for p in w.phase_list))
        # The run's services, on the recorder's thread (record/worker.py), in
        # this order: each may read the figures of those before it.
        events = recorder.events
        # The server's aborts against the clients' departures (telemetry/aborts.py):
        # the baseline now, then each interval; a fleet's departures are the workers'.
        aborts = AbortFeed(tele.sources, recorder.reclaim) if fleet is None else None
        if aborts is not None:
            aborts.feed()
            events.interval_closed.add_listener(aborts)
        else:
            recorder.reclaim.unmeasured = ("not measured in distributed runs (the departures "
                                           "are in the workers' clocks)")
        if fleet is None:  # a fleet's intervals carry its busiest worker's CPU
            events.interval_closed.add_listener(HealthProbe.start().mark)
        if judge:
            recorder.keyed = True
            events.interval_closed.add_listener(judge.on_interval)
        watch = FailFastWatch(w.client.fail_fast, recorder,
                              lambda: driver.halt_threadsafe("client.fail_fast")) \
            if w.client.fail_fast else None
        if watch:
            events.interval_closed.add_listener(watch.on_interval)
        # The loop only hands requests over to the recorder's thread.
        recording = RecorderThread(recorder)
        engine = Engine(plan, recording, on_interval=on_interval)
        driver: Engine | Fleet = fleet or engine
        # Crash-safe results: each interval's counters beside the hlog (record/journal.py).
        events.interval_closed.add_listener(IntervalJournal(journal, recorder, driver.scheduled,
                                                            tele))
        events.run_stopped.add_listener(lambda stopped: journal.end(stopped=stopped))
        if fleet is None:  # the console's view (a fleet's comes from its parts)
            events.interval_closed.add_listener(lambda iv, _h, _k: engine.interval_closed(iv))
        if options.metrics is not None:  # the last listener: it reads the others' figures
            options.metrics.attach(
                recorder, phases=Phases(phases), objectives=objectives, judge=judge,
                strict=options.strict,
                in_flight=fleet.in_flight if fleet else lambda: len(engine._tasks),
                info={"run_id": run_id, "workload": w.name, "target": target_label,
                      "version": __version__},
                planned_s=plan.total_s, lateness_bound_s=w.lateness_bound)
        if options.live_view is not None:  # after the exporter: it reads the same figures
            options.live_view.on_note = lambda note: journal.append({"t": "note", **note})
            options.live_view.attach(
                recorder, phases=Phases(phases), phase_info=phases, objectives=objectives,
                judge=judge, strict=options.strict,
                in_flight=fleet.in_flight if fleet else lambda: len(engine._tasks),
                info={"run_id": run_id, "workload": w.name, "target": target_label},
                planned_s=plan.total_s, lateness_bound_ms=w.lateness_bound * 1000.0,
                interval_s=w.interval, telemetry=tele,
                workers=(lambda: [r.model_dump(mode="json") for r in fleet.section().workers])
                if fleet else None,
                stop=_stopper(interrupts, engine if fleet is None else None))
        if fleet is not None:
            stopped = _drive_fleet(fleet, recorder, plan.total_s, on_interval, interrupts)
        else:
            with recording:
                stopped = _drive(engine, schedule(w, loaded.traces), interrupts)
        events.run_stopped.fire(stopped)
    if aborts is not None:  # the telemetry's last scrape is in: match what is left
        aborts.feed()
        aborts.end()
        recorder.settle_late()
    stop_reason = (watch.reason if watch and watch.reason else f"{INTERRUPTED} before the end "
                   "of the schedule" if stopped and judge.breach is None and judge.decided is None
                   else None)
    loss = fleet.loss_reason() if fleet else None
    unwritten = _unwritten(journal.error, recorder.hlog.error if recorder.hlog else None)
    result = assemble(
        facts, finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        recorder=recorder, scheduled=driver.scheduled, unfinished=driver.unfinished,
        objectives=objectives, judge=judge,
        telemetry=telemetry_section(tele.result(start_ns), phases, recorder, stopped),
        generator=fleet.health() if fleet else whole_run.finish(),
        # A run stopped early (abort, Ctrl-C) is judged over the time it ran.
        ended_s=recorder.intervals[-1].end_s if recorder.intervals and stopped else None,
        stop_reason="; ".join(r for r in (stop_reason, loss, unwritten) if r) or None)
    if fleet is not None:
        result = result.model_copy(update={"distribution": fleet.section()})
    # What the requests carried, as their builders counted (a fleet's: its workers').
    ledgers = fleet.media() if fleet else plan_ledgers(plan.requests, plan.scenario_names)
    if ledgers:
        result = result.model_copy(update={"media": {name: MediaSent(**media_sent(ledger))
                                                     for name, ledger in ledgers.items()}})
    if options.metrics is not None:
        options.metrics.finish(result)  # final verdicts, before the reports' seconds
    if options.live_view is not None:
        result = result.model_copy(update={"notes": [Note(**n) for n in
                                                     options.live_view.run_notes()]})
        options.live_view.finish(result)
    try:
        write_all(result, out_dir, os.environ.get("GITHUB_STEP_SUMMARY"), options.reports)
    except InputError as exc:  # a full disk at the end: say what the run found
        kept = ("its journal and hlog were cut short too" if unwritten else
                f"{JOURNAL_NAME} and {HLOG_NAME} hold it: `loadkit report {out_dir}` "
                "rebuilds the results once the folder can be written")
        raise RunError(f"{exc}; the run had ended with {_gist(result)}; {kept}") from None
    return result


def _unwritten(*errors: str | None) -> str | None:
    """The untrusted reason when the journal or the hlog could not be written
    (a full disk): run.json still holds the whole run, those files do not."""
    lost = [e for e in errors if e]
    return (f"the run folder could not be written as the run went ({'; '.join(lost)}): "
            "each stops there; run.json holds the whole run") if lost else None


def _gist(result: RunResult) -> str:
    c = result.counts
    return f"verdict {result.verdict.upper()} ({c.completed:,} completed, {c.errors:,} errors)"


def _stopper(interrupts: Interrupts | None, engine: Engine | None) -> Callable[[], None] | None:
    """The live view's stop button: a Ctrl-C (the same path: partial results,
    exit 3) where the run handles signals, else the engine's interrupt."""
    if interrupts is not None:
        return lambda: os.kill(os.getpid(), signal.SIGINT)
    return engine.interrupt_threadsafe if engine is not None else None


def _facts(loaded: LoadedWorkload, plan: Plan, run_id: str, target_label: str,
           options: RunOptions) -> RunFacts:
    w = loaded.workload
    return RunFacts(
        run_id=run_id, loadkit_version=__version__, host=platform.node(),
        git_commit=_git_commit(Path(loaded.path).parent),
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        target=target_label, closed_loop=bool(plan.closed), workload=_workload_info(loaded),
        phases=[PhaseInfo(name=p.name, start_s=s, duration_s=p.duration, warmup=p.warmup)
                for p, s in zip(w.phase_list, phase_starts(w))],
        interval_s=w.interval, lateness_bound_ms=w.lateness_bound * 1000.0,
        strict=options.strict, allow_saturated=options.allow_saturated,
        declared_rates=[(t.name, p.name, _declared_rate(w.arrival_for(t, p), p.duration))
                        for t in w.all_tenants for p in w.phase_list],
        cache_reset=w.cache == "cold")


def _journal_header(facts: RunFacts, plan: Plan, objectives: list,
                    tele: TelemetrySession) -> dict:
    """The journal's first line: what `loadkit report` needs to rebuild the
    result of a run that died (loadkit/run/recover.py)."""
    return {
        **facts.model_dump(mode="json", by_alias=True), "pid": os.getpid(),
        "planned_s": plan.total_s,
        "objectives": [o.model_dump(mode="json") for o in objectives],
        "names": {"phases": plan.phase_names, "scenarios": plan.scenario_names,
                  "tenants": plan.tenant_names},
        "telemetry": {"interval_s": tele.spec.interval,
                      "price_per_gpu_hour": tele.spec.price_per_gpu_hour,
                      "gpus_declared": tele.spec.gpus}}


def _workload_info(loaded: LoadedWorkload) -> WorkloadInfo:
    w = loaded.workload
    return WorkloadInfo(
        name=w.name, path=loaded.path, sha256=loaded.sha256, seed=w.seed,
        duration_s=w.measured_s, warmup_s=sum(p.duration for p in w.phase_list if p.warmup),
        interval_s=w.interval,
        spec=public_spec(w.model_dump(mode="json", by_alias=True)))


def _git_commit(folder: Path) -> str | None:
    """HEAD of the repository holding the workload file; None outside one."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder or ".", timeout=2,
                              capture_output=True, text=True, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and len(commit) >= 40 else None


def _declared_rate(spec: Any, duration: float) -> float | None:
    return 0.0 if spec is None else mean_rate(spec, duration)


def _drive(engine: Engine, slots: Iterator[Slot], interrupts: Interrupts | None) -> bool:
    """Run the engine on uvloop when installed; with `interrupts` (the CLI's
    handle_signals), Ctrl-C/SIGTERM stop it cleanly and a second one exits at
    once (loadkit/interrupts.py). Returns True when the run was stopped early."""

    async def main() -> bool:
        if interrupts is not None:
            interrupts.attach(asyncio.get_running_loop(), engine.stop.set)
        try:
            await engine.run(slots)
        finally:
            if interrupts is not None:
                interrupts.detach()
        return engine.stop.is_set()

    return run_async(main())


def _drive_fleet(fleet: Fleet, recorder: Recorder, total_s: float,
                 on_interval: Callable[[Progress], None] | None,
                 interrupts: Interrupts | None) -> bool:
    """Merge the workers' intervals into `recorder` until each is done or
    lost; lost workers' unfinished requests are charged after the last one."""

    async def main() -> bool:
        if interrupts is not None:
            interrupts.attach(asyncio.get_running_loop(), fleet.interrupt)
        try:
            return await fleet.run(recorder, on_interval, total_s)
        finally:
            if interrupts is not None:
                interrupts.detach()

    stopped = run_async(main())
    fleet.account_losses(recorder)
    return stopped
