"""The comparison's statistics, on samples drawn from known distributions."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scipy import stats

from loadkit.compare import compare_runs
from loadkit.compare.render import row_line
from loadkit.compare.stats import compare_series, mann_whitney, parse_tolerances
from loadkit.errors import InputError
from loadkit.record.histogram import HdrHistogram, new_histogram, record_us
from loadkit.result.model import RunResult
from support.synthetic_run import synthetic_day


def sample(rng: random.Random, n: int, scale: float = 1.0) -> tuple[HdrHistogram, list[int]]:
    h, values = new_histogram(), []
    for _ in range(n):
        v = int(rng.lognormvariate(10.0, 0.5) * scale)  # ~22 ms median, long right tail
        record_us(h, v)
        values.append(v)
    return h, values


def test_mann_whitney_agrees_with_scipy_on_the_same_samples() -> None:
    rng = random.Random(11)
    (ha, a), (hb, b) = sample(rng, 800), sample(rng, 900, 1.05)
    z, p = mann_whitney(ha, hb)
    # HDR buckets tie values within 0.1%: the p-value moves a little, not the answer.
    expected = stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert z > 0
    assert p == pytest.approx(expected, rel=0.25, abs=1e-4)


@pytest.mark.slow
def test_false_positive_rate_on_identical_distributions_is_at_most_5_percent() -> None:
    """100 pairs of runs from one distribution: regressions (or anything but
    'no change') are declared in at most 5% of them."""
    rng = random.Random(2026)
    flagged = 0
    for _ in range(100):
        rows = compare_series("latency", "all", sample(rng, 2000)[0], sample(rng, 2000)[0],
                              ("p50", "p90", "p99"), {})
        flagged += any(r.decision != "no_change" for r in rows)
    assert flagged <= 5, flagged


def test_a_20_percent_slowdown_is_found_and_measured() -> None:
    """8,000 samples a side (a minute at ~130 req/s): p50 and p90 both flag it.
    The interval is conservative, so fewer samples give `inconclusive` more often."""
    rng = random.Random(7)
    found = 0
    for _ in range(20):
        rows = compare_series("latency", "all", sample(rng, 8000)[0],
                              sample(rng, 8000, 1.2)[0], ("p50", "p90"), {})
        found += all(r.decision == "regression" for r in rows)
        for r in rows:
            assert r.ci_low_pct is not None and r.ci_high_pct is not None, r
            assert r.ci_low_pct <= 20.0 <= r.ci_high_pct + 1.0, r  # the interval covers it
    assert found >= 19, found


def test_a_5_percent_shift_within_tolerance_is_no_change() -> None:
    rng = random.Random(8)
    rows = compare_series("latency", "all", sample(rng, 20000)[0],
                          sample(rng, 20000, 1.05)[0], ("p50",), {})
    assert rows[0].p_value is not None and rows[0].p_value < 1e-6  # clearly a shift ...
    assert rows[0].decision == "no_change"  # ... but inside the 10% tolerance


def test_too_few_samples_say_so() -> None:
    rng = random.Random(9)
    rows = compare_series("latency", "all", sample(rng, 500)[0], sample(rng, 500)[0],
                          ("p50", "p99"), {})
    assert [r.decision for r in rows] == ["no_change", "insufficient_samples"]
    assert row_line(rows[1]) == ("p99: insufficient samples (500 vs 500 samples; "
                                 "p99 needs 1,000 in each)")


def test_tolerances_parse_and_reject_nonsense() -> None:
    assert parse_tolerances(["p99=10%", "ttft.p50=5", "error_rate=1%"]) == {
        "p99": 10.0, "ttft.p50": 5.0, "error_rate": 1.0}
    for bad in ["p99", "=5%", "p99=-1%", "p99=inf", "p99=lots"]:
        with pytest.raises(ValueError, match="STAT=PCT"):
            parse_tolerances([bad])


def test_runs_of_no_scenario_in_common_are_not_compared() -> None:
    """A chat run against an embeddings run: their latencies are of different
    requests (an audit saw an "IMPROVEMENT", exit 0). One scenario in common
    is enough to compare."""
    def run(*scenarios: tuple[str, str]) -> RunResult:
        doc = synthetic_day(intervals=10)
        doc["workload"]["spec"] = {"scenarios": [{"name": n, "kind": k} for n, k in scenarios]}
        return RunResult.model_validate(doc)

    chat, embed = ("chat", "openai-chat"), ("chat", "openai-embeddings")
    with pytest.raises(InputError, match=r"share no scenario \(base: chat \(openai-chat\); "
                                         r"candidate: chat \(openai-embeddings\)\)"):
        compare_runs(run(chat), run(embed))
    assert compare_runs(run(chat), run(chat, embed)).rows


def test_a_compare_folder_holds_one_comparison_and_never_a_run(tmp_path: Path) -> None:
    """Written again with fewer reports, the earlier comparison's reports go
    (its compare.md once sat beside a newer compare.json, disagreeing); a
    run's folder is refused, not filled with a comparison."""
    from loadkit.compare import write

    doc = synthetic_day(intervals=10)
    doc["workload"]["spec"] = {"scenarios": [{"name": "chat", "kind": "openai-chat"}]}
    run = RunResult.model_validate(doc)
    comparison = compare_runs(run, run)
    out = tmp_path / "cmp"
    write(comparison, run, run, out, frozenset({"md", "junit"}))
    assert {p.name for p in out.iterdir()} == {"compare.json", "compare.md", "compare-junit.xml"}
    write(comparison, run, run, out, frozenset({"junit"}))
    assert {p.name for p in out.iterdir()} == {"compare.json", "compare-junit.xml"}
    (tmp_path / "a-run").mkdir()
    (tmp_path / "a-run" / "run.json").write_text("{}")
    with pytest.raises(InputError, match=r"holds a run's or a search's data \(run.json\)"):
        write(comparison, run, run, tmp_path / "a-run")
