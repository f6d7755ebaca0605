"""`loadkit compare BASE_DIR CAND_DIR`: the regression gate against a baseline."""

from __future__ import annotations

from pathlib import Path

import click

from loadkit.cli.params import outputs
from loadkit.compare import (
    compare_runs,
    console_lines,
    exit_code,
    parse_tolerances,
    write,
)
from loadkit.result import load_run


@click.command("compare")
@click.argument("base_dir", type=click.Path(path_type=Path))
@click.argument("cand_dir", type=click.Path(path_type=Path))
@click.option("--max-regression", "tolerances", multiple=True, metavar="STAT=PCT",
              help="Tolerated slow-down before a significant change is a regression: "
                   "p99=10% (every metric), ttft.p99=20% (one), error_rate=1% (points). "
                   "Default 10% per percentile, 0.5 points of error rate. Repeatable.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: CAND_DIR/compare/).")
@click.option("--inconclusive", type=click.Choice(["fail", "pass"]), default="fail",
              show_default=True,
              help="How a shift beyond tolerance that the data cannot confirm exits.")
@click.option("--outputs", "reports", callback=outputs, metavar="LIST",
              help="The reports to write beside compare.json, comma-separated from md, "
                   "junit, html (default: all).")
@click.option("--quiet", "-q", is_flag=True, help="Only the verdict.")
def compare_command(base_dir: Path, cand_dir: Path, tolerances: tuple[str, ...],
                    out_dir: Path | None, inconclusive: str, reports: frozenset[str],
                    quiet: bool) -> int:
    """Compare CAND_DIR's run with BASE_DIR's, series by series.

    Exit codes: 0 no significant regression, 1 a regression beyond tolerance
    (or an inconclusive shift, unless --inconclusive=pass), 2 bad input, 3 a
    run was not trustworthy.
    """
    try:
        tol = parse_tolerances(tolerances)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-regression") from None
    base, cand = load_run(base_dir), load_run(cand_dir)
    comparison = compare_runs(base, cand, tol)
    out = out_dir or (cand_dir.parent if cand_dir.is_file() else cand_dir) / "compare"
    page = write(comparison, base, cand, out, reports)
    if not quiet:
        for line in console_lines(comparison):
            click.echo(line)
        for w in comparison.warnings:
            click.echo(f"warning: {w}", err=True)
    code = exit_code(comparison, inconclusive)
    click.echo(f"compare: {comparison.verdict.replace('_', ' ').upper()} (exit {int(code)})")
    click.echo(f"report: {page}")
    return int(code)
