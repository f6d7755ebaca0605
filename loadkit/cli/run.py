"""`loadkit run WORKLOAD`: run a workload and gate on its SLOs."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli.console import Console
from loadkit.cli.distributed import fleet_from, fleet_options
from loadkit.cli.metrics import ServedMetrics, metrics_options
from loadkit.cli.params import LOAD, duration, fresh_out, outputs
from loadkit.cli.ui import ServedUI, ui_options
from loadkit.outputs import run_page
from loadkit.run.execute import RunOptions, execute, exit_code
from loadkit.workload.loader import Overrides, load_workload
from loadkit.workload.models import Workload


def _scale(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        factor = float(value)
    except ValueError:
        raise click.BadParameter("must be a number, e.g. 0.1 to run ten times faster") from None
    if not 1e-6 <= factor <= 1e6:
        raise click.BadParameter("must be between 1e-6 and 1e6")
    return factor


LIVE_REPORT_S = 60.0  # --live-report's default period, for runs longer than:
LIVE_REPORT_AFTER_S = 120.0


def _live_period(flag: float | None, workload: Workload) -> float:
    if flag is not None:
        return flag
    planned = sum(p.duration for p in workload.phase_list)
    return LIVE_REPORT_S if planned > LIVE_REPORT_AFTER_S else 0.0


def _live_report(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A period of at least 1 s, or off/0; None: the default (on for runs over two minutes)."""
    if value is not None and value.strip().lower() in ("off", "no", "false", "0"):
        return 0.0
    return duration(1.0, zero=True, setting="or off")(ctx, param, value)


@click.command("run")
@click.argument("workload", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--target", help="Base URL of the endpoint (default: the workload's, "
              "or the embedded simulator when it names none).")
@click.option("--duration", callback=duration(),
              help="Measured duration, e.g. 30s or 5m (phases keep their proportions).")
@click.option("--time-scale", callback=_scale,
              help="Multiply the file's schedule times, shapes and think times included "
                   "(0.01 = 100x faster); times that race the server (patience, retry "
                   "delay, tool latency) stay.")
@click.option("--rate", type=LOAD,
              help="Total arrival rate in req/s (tenants keep their shares; each with one "
                   "`rate`, and no phases).")
@click.option("--seed", type=int, help="Seed of the schedule and prompts.")
@click.option("--slo", "slo_files", multiple=True, type=click.Path(dir_okay=False),
              help="SLO file whose objectives join the workload's (repeatable).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              callback=lambda _ctx, _param, value: fresh_out(value),
              help="Output folder, new or without an earlier result "
                   "(default: reports/<run-id>/).")
@click.option("--inconclusive", type=click.Choice(["fail", "pass"]), default="fail",
              show_default=True, help="How an inconclusive verdict exits.")
@click.option("--strict", is_flag=True,
              help="A percentile whose 95% interval contains the threshold is inconclusive.")
@click.option("--allow-saturated", is_flag=True,
              help="Exit by the verdict even when the generator fell behind.")
@click.option("--stop-when-decided", is_flag=True,
              help="End the run as soon as its verdict is decided: every SLO passes, or "
                   "one fails (an always-valid test after each interval, from the 5th); "
                   "the duration becomes a maximum (stop_when_decided).")
@click.option("--insecure", is_flag=True, default=None,
              help="Do not verify TLS certificates (explicit opt-in).")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False),
              help="CA bundle to verify the target's certificate with.")
@click.option("--model", help="Model name for every OpenAI scenario (default: the scenario's "
              "`model`, else the one the target's /v1/models lists).")
@click.option("--no-probe", is_flag=True,
              help="Skip the unmeasured request per (tenant, scenario) sent before the clock "
                   "starts to catch a refusing target (401, 404, ...); it also wakes the "
                   "target, so skip it to measure a cold start (client.probe).")
@click.option("--no-fail-fast", is_flag=True,
              help="Run to the end even when the target refuses (HTTP 4xx) nearly every "
                   "request (client.fail_fast).")
@click.option("--drain", callback=duration(zero=True, setting="client.drain"),
              help="How long requests still in flight when the schedule ends may take to "
                   "finish, e.g. 30s; then they are cancelled and count as failures "
                   "(client.drain, default 30s).")
@metrics_options
@ui_options
@click.option("--live-report", "live_report", callback=_live_report, metavar="PERIOD|off",
              help="Rewrite report.html in the output folder every PERIOD while the run goes, "
                   "from its journal, in a child process at idle priority (default: every 60s for runs "
                   "longer than 2 minutes, else off).")
@click.option("--outputs", callback=outputs, metavar="LIST",
              help="The reports to write beside run.json, comma-separated from md, junit, "
                   "html (default: all; run.json, journal.jsonl and latency.hlog are always "
                   "written, and `loadkit report` renders the rest later).")
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the verdict.")
@fleet_options
def run_command(workload: Path, target: str | None, duration: float | None,
                time_scale: float | None,
                rate: float | None, seed: int | None, slo_files: tuple[str, ...],
                out_dir: Path | None,
                inconclusive: str, strict: bool, allow_saturated: bool,
                stop_when_decided: bool, insecure: bool | None,
                ca_bundle: str | None, model: str | None, no_probe: bool, no_fail_fast: bool,
                drain: float | None, metrics_port: int | None, metrics_host: str,
                metrics_token: str | None, metrics_linger: float,
                ui: tuple[str, int] | None, ui_token: str | None, ui_linger: float,
                live_report: float | None,
                outputs: frozenset[str], quiet: bool, workers: int | None, master: bool,
                expect_workers: int | None,
                master_bind_host: str, master_bind_port: int, worker_timeout: float,
                allow_worker_loss: bool) -> int:
    """Run WORKLOAD (a YAML file) and print the SLO verdict.

    Exit codes: 0 every SLO passed, 1 an SLO failed (or was inconclusive,
    unless --inconclusive=pass), 2 bad input, 3 the run could not be done or
    trusted.
    """
    loaded = load_workload(workload, Overrides(duration=duration, time_scale=time_scale,
                                               rate=rate, seed=seed,
                                               target=target, insecure=insecure,
                                               ca_bundle=ca_bundle, slo_files=slo_files,
                                               model=model, fail_fast=not no_fail_fast,
                                               probe=not no_probe, drain=drain,
                                               stop_when_decided=stop_when_decided))
    console = Console(quiet=quiet)
    # Off loopback without a token, or a taken port: exit 2 before anything is sent.
    served = ServedMetrics(metrics_port, metrics_host, metrics_token, metrics_linger)
    live = ServedUI(ui, ui_token, ui_linger)
    options = RunOptions(out_dir=out_dir, allow_saturated=allow_saturated, strict=strict,
                         reports=outputs,
                         handle_signals=True, quiet_gc=True, metrics=served.metrics,
                         live_view=live.view,
                         live_report_s=_live_period(live_report, loaded.workload),
                         fleet=fleet_from(workers, master, expect_workers, master_bind_host,
                                          master_bind_port, worker_timeout, allow_worker_loss))
    with served, live:
        result, out = execute(loaded, options, on_interval=console.progress,
                              on_start=console.started)
        code = exit_code(result, inconclusive)
        console.finished(result, run_page(out, outputs), code)
        live.finished(out / "report.html" if "html" in outputs else None)
        served.linger()
    return int(code)
