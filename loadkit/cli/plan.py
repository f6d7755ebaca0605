"""`loadkit plan WORKLOAD`: what would be sent, without sending anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click

from loadkit.arrivals.summary import sparkline, summarize
from loadkit.cli.params import LOAD, duration
from loadkit.cli.run import _scale
from loadkit.workload.loader import Overrides, load_workload


@click.command("plan")
@click.argument("workload", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--duration", callback=duration(), help="Measured duration, e.g. 30s or 5m.")
@click.option("--time-scale", callback=_scale, help="Multiply the file's schedule times (as `loadkit run`).")
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
    rows = [("phase", "tenant", "requests", "req/s", "prompt tok", "output tok")]
    for p in w.phase_list:
        for t in w.all_tenants:
            key = (p.name, t.name)
            n = s.requests[key]
            rows.append((p.name + (" (warm-up)" if p.warmup else ""), t.name, f"{n:,}",
                         f"{n / p.duration:.2f}", f"{round(s.prompt_tokens[key]):,}",
                         f"{round(s.output_tokens[key]):,}"))
    rows.append(("total", "", f"{sum(s.requests.values()):,}", "",
                 f"{round(sum(s.prompt_tokens.values())):,}",
                 f"{round(sum(s.output_tokens.values())):,}"))
    for line in _table(rows):
        click.echo(line)
    for line in s.closed:
        click.echo(line)
    if s.later_turns:
        click.echo(f"of the requests, {s.later_turns:,} are sessions' later turns as drawn: "
                   "sent when the answers before them come back, so not in the rate below or "
                   "the tokens; a conversation from a prompt set that ends sooner sends fewer, "
                   "and an answer that calls a tool adds a round")
    if s.from_sets:
        click.echo(f"tokens of {', '.join(s.from_sets)}: each request at its prompt set's mean "
                   "(kept prompts, in words); the run draws the prompts at random")
    peak = max(s.per_second, default=0)
    click.echo(f"rate per second, all tenants (peak {peak}/s):")
    click.echo(sparkline(s.per_second))
    return 0


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Two text columns, then numbers right-aligned, each column as wide as
    its widest cell (a day-long plan's counts run to 13 digits)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(n) if i < 2 else c.rjust(n)
                      for i, (c, n) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in rows]
