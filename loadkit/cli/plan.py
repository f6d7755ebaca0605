"""`loadkit plan WORKLOAD`: what would be sent, without sending anything."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.arrivals.summary import sparkline, summarize
from loadkit.cli.params import LOAD, duration
from loadkit.cli.run import _scale
from loadkit.workload.loader import Overrides, load_workload


@click.command("plan")
@click.argument("workload", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--duration", callback=duration(), help="Measured duration, e.g. 30s or 5m.")
@click.option("--time-scale", callback=_scale, help="Multiply every time in the file.")
@click.option("--rate", type=LOAD)
@click.option("--seed", type=int)
def plan_command(workload: Path, duration: float | None, time_scale: float | None,
                 rate: float | None, seed: int | None) -> int:
    """Print the schedule WORKLOAD would send: requests per tenant and phase,
    a per-second rate sketch and token totals. Sends nothing."""
    loaded = load_workload(workload, Overrides(duration=duration, time_scale=time_scale,
                                               rate=rate, seed=seed))
    w = loaded.workload
    s = summarize(w, loaded.traces, loaded.prompt_sets)
    click.echo(f"workload {w.name} (seed {w.seed}): {len(w.phase_list)} phases, "
               f"{len(w.all_tenants)} tenant(s), {s.total_s:g} s, measured {w.measured_s:g} s")
    header = f"{'phase':<22}{'tenant':<14}{'requests':>10}{'req/s':>9}{'prompt tok':>13}{'output tok':>13}"
    click.echo(header)
    for p in w.phase_list:
        for t in w.all_tenants:
            key = (p.name, t.name)
            n = s.requests[key]
            label = p.name + (" (warm-up)" if p.warmup else "")
            click.echo(f"{label:<22}{t.name:<14}{n:>10,}{n / p.duration:>9.2f}"
                       f"{round(s.prompt_tokens[key]):>13,}{round(s.output_tokens[key]):>13,}")
    click.echo(f"{'total':<36}{sum(s.requests.values()):>10,}{'':>9}"
               f"{round(sum(s.prompt_tokens.values())):>13,}"
               f"{round(sum(s.output_tokens.values())):>13,}")
    for line in s.closed:
        click.echo(line)
    if s.from_sets:
        click.echo(f"tokens of {', '.join(s.from_sets)}: each request at its prompt set's mean "
                   "(kept prompts, in words); the run draws the prompts at random")
    peak = max(s.per_second, default=0)
    click.echo(f"rate per second, all tenants (peak {peak}/s):")
    click.echo(sparkline(s.per_second))
    return 0
