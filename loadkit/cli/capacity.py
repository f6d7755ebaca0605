"""`loadkit capacity WORKLOAD`: the highest load within the SLOs, as an interval.

Three forms:

    loadkit capacity WORKLOAD.yaml [options]         search (probes), write the reports, gate
    loadkit capacity RESULT.json --expect ...        judge a saved search again (no probe)
    loadkit capacity --compare BASE CAND             did the candidate lose capacity?

Exit codes as `loadkit run`: 0 pass, 1 an expectation failed (or an undecided
answer, unless --inconclusive=pass), 2 bad input, 3 untrusted (the generator
was the limit, a probe could not be done).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path

import click

from loadkit.capacity import (
    CapacityResult,
    ProbeSetup,
    Request,
    compare_capacity,
    exit_code,
    find_capacity,
    load_capacity,
    regate,
    write_all,
)
from loadkit.capacity import compare as capacity_compare
from loadkit.capacity.model import ProbeRecord, Ramp
from loadkit.capacity.report import facts, headline, slo_cell
from loadkit.cli.distributed import workers
from loadkit.cli.params import LOAD, duration, fresh_out, outputs
from loadkit.cli.ui import ServedUI, ui_options
from loadkit.distributed.fleet import FleetOptions
from loadkit.workload.loader import Overrides


def _fraction(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """'5%' or 0.05 -> 0.05, within (0, 1]."""
    if value is None:
        return None
    text = value.strip()
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise click.BadParameter("a share such as 5% (or 0.05)") from None
    if not 0 < share <= 1:
        raise click.BadParameter("between 0% and 100%, e.g. 5%")
    return share


@click.command("capacity")
@click.argument("workload", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--slo", "slo_files", multiple=True, type=click.Path(dir_okay=False),
              help="SLO file whose objectives join the workload's (repeatable).")
@click.option("--min", "min_load", type=LOAD,
              help="First and lowest load probed, req/s (users for closed loops); default: "
                   "the workload's own, and the search may fall below it.")
@click.option("--max", "max_load", type=LOAD, help="Highest load probed.")
@click.option("--precision", callback=_fraction, default="5%", show_default=True,
              help="Stop when (lowest failing - highest passing) / highest passing is this "
                   "small.")
@click.option("--probe", "probe_s", callback=duration(0.5, default=60.0), metavar="DURATION",
              help="Measured length of a probe (default 60s); each has its own warm-up "
                   "(the workload's, else 20% of this), and an inconclusive one is run again "
                   "twice as long.")
@click.option("--budget", "budget_s", callback=duration(1.0, default=1800.0),
              metavar="DURATION", help="Wall time for all probes (default 30m).")
@click.option("--expect", help="Gate on the answer: 'capacity >= 120 req/s', "
                               "'capacity >= 64 users', 'headroom >= 1.5x'.")
@click.option("--production-rate", "production", type=LOAD,
              help="Today's load: the report states headroom = capacity / this, as an "
                   "interval.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: reports/capacity-<time>/); a search's is new "
                   "or without an earlier result, its probes in probe-NN/.")
@click.option("--target", help="Base URL of the endpoint (default: the workload's, or the "
                                "embedded simulator, one per probe).")
@click.option("--seed", type=int, help="Seed of the schedules and prompts.")
@click.option("--model", help="Model name for every OpenAI scenario.")
@click.option("--inconclusive", type=click.Choice(["fail", "pass"]), default="fail",
              show_default=True, help="How an undecided answer exits.")
@click.option("--strict", is_flag=True,
              help="A percentile whose 95% interval contains its threshold is inconclusive "
                   "(the probe is extended) rather than marginal.")
@click.option("--full-probes", is_flag=True,
              help="Run every probe its whole --probe length, even once its SLOs are "
                   "decided (by default a probe ends then).")
@click.option("--ramp", "ramp_s", callback=duration(0.5), metavar="STEP",
              help="First one continuous run that raises the load by 25% every STEP (e.g. "
                   "10s) from --min until a step fails (or --max), then probes confirm the "
                   "step below and bisect: a quick first answer.")
@click.option("--workers", callback=workers, metavar="N|auto",
              help="Run each probe's load in N local worker processes (open loops only).")
@click.option("--compare", "compare", nargs=2, type=click.Path(path_type=Path),
              metavar="BASE CAND", help="Compare two capacity.json (or their folders) "
                                        "instead of searching.")
@click.option("--max-loss", callback=_fraction, default="10%", show_default=True,
              help="With --compare: capacity the candidate may lose before it is a "
                   "regression.")
@click.option("--outputs", "reports", callback=outputs, metavar="LIST",
              help="The reports to write beside capacity.json, comma-separated from md, "
                   "junit, html (default: all; each probe writes run.json, summary.md and "
                   "junit.xml).")
@click.option("--quiet", "-q", is_flag=True, help="No line per probe, only the answer.")
@ui_options
def capacity_command(workload: Path | None, slo_files: tuple[str, ...], min_load: float | None,
                     max_load: float | None, precision: float, probe_s: float,
                     budget_s: float, expect: str | None, production: float | None,
                     out_dir: Path | None, target: str | None, seed: int | None,
                     model: str | None, inconclusive: str, strict: bool,
                     full_probes: bool, ramp_s: float | None, workers: int | None,
                     compare: tuple[Path, Path] | None, max_loss: float,
                     reports: frozenset[str], quiet: bool, ui: tuple[str, int] | None,
                     ui_token: str | None, ui_linger: float) -> int:
    """Find the highest load WORKLOAD carries within its SLOs.

    Probes grow geometrically until an SLO fails, then bisect; the answer is
    an interval (highest passing, lowest failing load). Exit codes: 0 pass,
    1 an --expect failed (or undecided, unless --inconclusive=pass), 2 bad
    input, 3 untrusted (the generator was the limit).
    """
    if compare:
        if workload is not None:
            raise click.UsageError("give WORKLOAD or --compare BASE CAND, not both")
        return _compare(*compare, max_loss, out_dir, inconclusive, reports)
    if workload is None:
        raise click.UsageError("give a WORKLOAD (or a capacity.json, or --compare BASE CAND)")
    if workload.suffix == ".json":
        result = regate(load_capacity(workload), expect, production)
        page = write_all(result, out_dir, reports) if out_dir is not None else None
        return _finish(result, page, inconclusive)
    out = fresh_out(out_dir) or Path("reports") / ("capacity-" + dt.datetime.now(dt.UTC)
                                        .strftime("%Y%m%dT%H%M%SZ"))
    fleet = FleetOptions(workers=workers, local=True) if workers else None
    live = ServedUI(ui, ui_token, ui_linger, kind="capacity")  # a refused address: exit 2
    setup = ProbeSetup(path=workload, out_dir=out, strict=strict, cli=True, fleet=fleet,
                       live_view=live.view,
                       until_decided=not full_probes,
                       overrides=Overrides(target=target, slo_files=slo_files, seed=seed,
                                           model=model))
    request = Request(setup=setup, start=min_load, high=max_load, precision=precision,
                      probe_s=probe_s, budget_s=budget_s, expect=expect, production=production,
                      ramp_s=ramp_s)
    def header() -> None:  # once the search can be carried out
        if not quiet:
            click.echo(f"loadkit capacity: {workload}, results in {out}/", err=True)

    # Each probe is a run that would append its summary.md to a GitHub job's
    # summary: the search's one capacity.md goes there instead.
    step_summary = os.environ.pop("GITHUB_STEP_SUMMARY", None)
    on_probe = _probe_feed(live, None if quiet else _probe_line)
    with live:
        try:
            result = find_capacity(request, on_probe=on_probe,
                                   on_ramp=None if quiet else _ramp_line, on_start=header)
        finally:
            if step_summary is not None:
                os.environ["GITHUB_STEP_SUMMARY"] = step_summary
        page = write_all(result, out, reports)
        live.finished(page)
    if step_summary and "md" in reports:
        with open(step_summary, "a", encoding="utf-8") as f:
            f.write((out / "capacity.md").read_text(encoding="utf-8"))
    return _finish(result, page, inconclusive)


def _probe_feed(live: ServedUI, line: Callable[[ProbeRecord], None] | None
                ) -> Callable[[ProbeRecord], None] | None:
    """Each probe's line, and its point on the live view's curve (--ui)."""
    if live.view is None:
        return line
    view = live.view

    def both(p: ProbeRecord) -> None:
        latency = p.latency.get("latency")
        view.add_probe({"index": p.index, "value": p.value, "throughput": p.throughput_rps,
                        "latency_p99_ms": latency.p99 if latency else None,
                        "status": str(p.status)})
        if line is not None:
            line(p)
    return both


def _probe_line(p: ProbeRecord) -> None:
    worst = [s for s in p.slos if s.verdict != "pass"][:2]
    slos = "  ".join(f"{s.name} {slo_cell(s)}" for s in worst)
    sent = f"sent {p.sent_rps:.4g}/s  " if p.sent_rps is not None else ""
    decided = f" (decided at {p.decided_s:.3g} s)" if p.decided_s is not None else ""
    click.echo(f"probe {p.index}: {p.value:.4g} for {p.duration_s:.3g} s{decided} -> "
               f"{p.status.upper().replace('_', ' ')}  {sent}done {p.throughput_rps:.4g}/s  "
               f"{slos}  ({p.elapsed_s:.1f} s)".rstrip(), err=True)
    for reason in p.reasons:
        click.echo(f"  {reason}", err=True)


def _ramp_line(ramp: Ramp) -> None:
    for i, step in enumerate(ramp.steps, 1):
        worst = [s for s in step.slos if s.verdict != "pass"][:2]
        slos = "  ".join(f"{s.name} {slo_cell(s)}" for s in worst)
        click.echo(f"ramp step {i}: {step.value:.4g} from {step.start_s:g} s -> "
                   f"{step.status.upper()}  {step.samples} samples  {slos}".rstrip(), err=True)
    for reason in ramp.reasons:
        click.echo(f"  ramp ignored: {reason}", err=True)


def _finish(result: CapacityResult, page: Path | None, inconclusive: str) -> int:
    for label, text in facts(result):
        click.echo(f"{label}: {text}")
    for reason in result.untrusted_reasons:
        click.echo(f"UNTRUSTED: {reason}")
    for tip in result.advice:
        click.echo(f"hint: {tip}")
    code = exit_code(result, inconclusive)
    word = "UNTRUSTED" if not result.trusted else result.verdict.upper()
    click.echo(f"capacity {headline(result)}: {word} (exit {int(code)})")
    if page is not None:
        click.echo(f"report: {page}")
    return int(code)


def _compare(base: Path, cand: Path, max_loss: float, out_dir: Path | None,
             inconclusive: str, reports: frozenset[str]) -> int:
    b, c = load_capacity(base), load_capacity(cand)
    comparison = compare_capacity(b, c, max_loss)
    out = out_dir or (cand.parent if cand.is_file() else cand)
    page = capacity_compare.write(comparison, out, str(base), str(cand), reports)
    for w in comparison.warnings:
        click.echo(f"warning: {w}", err=True)
    code = capacity_compare.exit_code(comparison, inconclusive)
    click.echo(f"{comparison.reason}")
    click.echo(f"capacity compare: {comparison.decision.replace('_', ' ').upper()} "
               f"(exit {int(code)})")
    click.echo(f"report: {page}")
    return int(code)
