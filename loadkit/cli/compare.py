"""`loadkit compare BASE_DIR CAND_DIR`: the regression gate against a baseline."""

from __future__ import annotations

import json
from pathlib import Path

import click

from loadkit.cli.report import load_run
from loadkit.errors import ExitCode, InputError
from loadkit.report.compare_html import render_compare_html
from loadkit.report.comparison import render_compare_junit, render_compare_markdown, row_line
from loadkit.slo.compare import compare_runs, parse_tolerances


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
@click.option("--quiet", "-q", is_flag=True, help="Only the verdict.")
def compare_command(base_dir: Path, cand_dir: Path, tolerances: tuple[str, ...],
                    out_dir: Path | None, inconclusive: str, quiet: bool) -> int:
    """Compare CAND_DIR's run with BASE_DIR's, series by series.

    Exit codes: 0 no significant regression, 1 a regression beyond tolerance
    (or an inconclusive shift, unless --inconclusive=pass), 2 bad input, 3 a
    run was not trustworthy.
    """
    try:
        tol = parse_tolerances(list(tolerances))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--max-regression") from None
    base, cand = load_run(base_dir), load_run(cand_dir)
    try:
        comparison = compare_runs(base, cand, tol)
    except Exception as exc:  # noqa: BLE001 - a damaged run.json of any shape
        raise InputError(f"cannot compare these runs: damaged or incomplete run.json "
                         f"({type(exc).__name__}: {exc})") from None
    out = out_dir or (cand_dir.parent if cand_dir.is_file() else cand_dir) / "compare"
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "compare.json").write_text(json.dumps(comparison, indent=2, allow_nan=False)
                                          + "\n", encoding="utf-8")
        (out / "compare.md").write_text(render_compare_markdown(comparison), encoding="utf-8")
        (out / "compare-junit.xml").write_text(render_compare_junit(comparison),
                                               encoding="utf-8")
        (out / "compare.html").write_text(render_compare_html(comparison, base, cand),
                                          encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    verdict = comparison["verdict"]
    if not quiet:
        for r in comparison["rows"]:
            if r["decision"] not in ("no_change",):
                click.echo(f"{r['decision'].upper():13} {r['metric']} [{r['scope']}] "
                           f"{row_line(r)}")
        for w in comparison["warnings"]:
            click.echo(f"warning: {w}", err=True)
    if not comparison["trusted"]:
        code = ExitCode.UNTRUSTED
    elif verdict == "regression" or verdict == "inconclusive" and inconclusive == "fail":
        code = ExitCode.SLO_FAILED
    else:
        code = ExitCode.PASSED
    click.echo(f"compare: {verdict.replace('_', ' ').upper()} (exit {int(code)})")
    click.echo(f"report: {out / 'compare.html'}")
    return int(code)
