"""The SLO language: grammar, windows, goodput rules, SLO files with file and
line; and window verdicts judged from per-interval histograms (pure)."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from loadkit.errors import ExitCode, WorkloadError
from loadkit.record.histogram import new_histogram, record_us
from loadkit.record.recorder import Interval
from loadkit.result.model import PhaseInfo, SLOResult
from loadkit.slo.confidence import samples_to_decide
from loadkit.slo.evaluate import evaluate
from loadkit.slo.live import LiveJudge
from loadkit.slo.scopes import Phases
from loadkit.workload.loader import LoadedWorkload, Overrides, load_workload
from loadkit.workload.slo_spec import parse_condition, parse_objective

WORKLOAD = """\
name: t
duration: 60s
arrival: {rate: 5}
scenarios:
  - name: chat
    kind: openai-chat
"""


@pytest.mark.parametrize("text,metric,stat,threshold,unit,window,share", [
    ("latency p99 < 300ms in every 60s window", "latency", "p99", 300.0, "ms", 60.0, None),
    ("ttft p95 <= 0.2s in at least 95% of 1m windows", "ttft", "p95", 200.0, "ms", 60.0, 0.95),
    ("goodput >= 95%", "goodput", None, 0.95, "%", None, None),
    ("goodput >= 3 req/s", "goodput", None, 3.0, "req/s", None, None),
    ("output_tokens_per_s >= 500 tok/s", "output_tokens_per_s", None, 500.0, "tok/s", None, None),
    ("gpu.util mean >= 60%", "gpu.util", "mean", 0.6, "%", None, None),
    ("gpu.power max <= 0.7 kW", "gpu.power", "max", 700.0, "W", None, None),
    ("energy_per_request <= 5 J", "energy_per_request", None, 5.0, "J", None, None),
    ("cost_per_1m_output_tokens < 2 USD", "cost_per_1m_output_tokens", None, 2.0, "", None, None),
    ("prom.vllm:num_requests_waiting max < 10", "prom.vllm:num_requests_waiting", "max", 10.0,
     "", None, None),
    ("error_rate < 1% in every 30s window", "error_rate", None, 0.01, "%", 30.0, None),
])
def test_grammar(text: str, metric: str, stat: str | None, threshold: float, unit: str,
                 window: float | None, share: float | None) -> None:
    o = parse_objective(text)
    assert (o.metric, o.stat, o.unit, o.window_s, o.window_share) == (
        metric, stat, unit, window, share)
    assert o.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text,needle", [
    ("latency p99 < 3 furlongs", "time unit"),
    ("latency p100 < 3ms", "strictly between"),
    ("latency p0 < 3ms", "strictly between"),
    ("lag p99 < 3ms", "unknown metric 'lag'"),
    ("latency < 3ms", "needs a statistic"),
    ("error_rate < 120%", "at most 100%"),
    ("gpu.util p99 > 50%", "takes mean, max"),
    ("energy_per_request <= 5 W", "takes J"),
    ("isolation_ratio <= 1.5 in every 60s window", "no window"),
    ("latency p99 < 3ms in every 500ms window", "at least 1s"),
    ("latency p99 < 3ms in 120% of 60s windows", "share of windows"),
    ("latency p99 < 3ms in every fortnight window", "duration"),
    ("latency p99 < 3ms; import os", "cannot parse"),
    ("latency p99 < 300ms in most windows", "in at least 95% of 60s windows"),
])
def test_bad_objectives_say_why(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_objective(text)


def test_goodput_conditions() -> None:
    c = parse_condition("ttft <= 200ms")
    assert (c.metric, c.op, c.threshold_ns) == ("ttft", "<=", 200_000_000)
    for bad, needle in [("itl <= 5ms", "per-request"), ("ttft <= 5", "time unit"),
                        ("ttft p99 <= 5ms", "cannot parse")]:
        with pytest.raises(ValueError, match=needle):
            parse_condition(bad)


def load_with_slo(tmp_path: Path, slo_text: str, workload: str = WORKLOAD) -> LoadedWorkload:
    (tmp_path / "w.yaml").write_text(workload)
    (tmp_path / "slo.yaml").write_text(slo_text)
    return load_workload(tmp_path / "w.yaml", Overrides(slo_files=(str(tmp_path / "slo.yaml"),)))


@pytest.mark.parametrize("slo_text,line,key,needle", [
    ("slos:\n  - ttft p99 < 1s\n  - lag p99 < 3ms\n", 3, "slos[1]", "unknown metric"),
    ("slos:\n  - ttft p99 < 3 parsecs\n", 2, "slos[0]", "time unit"),
    ("slos:\n  - ttft p100 < 3ms\n", 2, "slos[0]", "strictly between"),
    ("", 1, "", "YAML mapping"),
    ("slos: []\n", 1, "", "no objectives"),
    ("slos:\n  - {slo: ttft p99 < 1s, abortt: true}\n", 2, "slos[0]", "abortt"),
    ("slos:\n  - {slo: ttft p99 < 1s, scenario: nope}\n", 2, "slos[0].scenario",
     "unknown scenario"),
    ("slos: [goodput >= 90%]\n", 1, "slos[0]", "needs `goodput:` rules"),
    ("goodput: [ttft < 1 parsec]\nslos: [goodput >= 90%]\n", 1, "goodput[0]", "time unit"),
    ("slos:\n  - {slo: gpu.util mean > 50%, abort: true}\n", 2, "slos[0]", "cannot abort"),
    ("slos:\n  - {slo: error_rate < 1%, abort: true}\n", 2, "slos[0]", "only percentile"),
    ("slos: [goodput >= 0.5]\ngoodput: [ttft < 1s]\n", 1, "slos[0]", "% (a share) or req/s"),
    ("slos: [latency p99 < 1s in every 1s window]\ninterval: 2s\n", 2, "interval", "unknown key"),
])
def test_bad_slo_files_name_file_line_and_key(tmp_path: Path, slo_text: str, line: int | None,
                                              key: str, needle: str) -> None:
    with pytest.raises(WorkloadError) as info:
        load_with_slo(tmp_path, slo_text)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    message = str(info.value)
    assert "slo.yaml" in message and needle in message, message
    assert (line, key) in [(ln, k) for ln, k, _ in info.value.problems], message


def test_slo_file_errors_point_into_the_file_past_the_workload_s_own_slos(
        tmp_path: Path) -> None:
    """The workload's own SLOs come first in the merged lists: an error in
    the file's first SLO is at the file's line, index 0."""
    (tmp_path / "w.yaml").write_text(
        "arrival: {rate: 5}\nscenarios: [{name: c, kind: http}]\n"
        "slos: [latency p99 < 1s, error_rate < 5%]\n"
        "phases: [{name: m, duration: 2s, slos: [latency p50 < 1s]}]\n")
    for text, line, key in (
            ("slos:\n  - {slo: ttft p99 < 1s, scenario: nope}\n", 2, "slos[0].scenario"),
            ("phases:\n  m:\n    - {slo: ttft p99 < 1s, scenario: c}\n", 3,
             "phases.m[0].scenario")):
        (tmp_path / "s.yaml").write_text(text)
        with pytest.raises(WorkloadError) as info:
            load_workload(tmp_path / "w.yaml", Overrides(slo_files=(str(tmp_path / "s.yaml"),)))
        assert (line, key) in [(ln, k) for ln, k, _ in info.value.problems], str(info.value)


def test_slo_file_mapping_form_scopes_and_goodput(tmp_path: Path) -> None:
    w = load_with_slo(tmp_path, "goodput: ['ttft <= 200ms', 'tpot <= 50ms']\nslos:\n"
                      "  - {slo: 'ttft p99 < 1s', abort: true, after: 20s}\n"
                      "  - {slo: 'goodput >= 90%', scenario: chat}\n").workload
    abort, good = w.objectives()
    assert abort.abort and abort.abort_after_s == 20.0 and abort.scope == "all"
    assert good.scope == "scenario:chat"
    assert [c.text for c in w.goodput_rule()] == ["ttft <= 200ms", "tpot <= 50ms"]


def test_slo_file_can_name_the_implicit_tenant_and_phases(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text("warmup: 1s\nduration: 2s\narrival: {rate: 5}\n"
                                     "scenarios: [{name: c, kind: http}]\n")
    (tmp_path / "s.yaml").write_text("tenants: {default: [error_rate < 1%]}\n"
                                     "phases: {measure: [latency p50 < 1s]}\n")
    w = load_workload(tmp_path / "w.yaml", Overrides(slo_files=(str(tmp_path / "s.yaml"),))).workload
    assert {(o.text, o.scope) for o in w.objectives()} == {
        ("error_rate < 1%", "tenant:default"), ("latency p50 < 1s", "phase:measure")}
    assert [p.name for p in w.phase_list] == ["warmup", "measure"]


def test_window_must_be_whole_intervals(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKLOAD + "interval: 2s\nslos: "
                                     "['latency p99 < 1s in every 5s window']\n")
    with pytest.raises(WorkloadError, match="whole number of 2s intervals"):
        load_workload(tmp_path / "w.yaml")


def test_window_shorter_than_the_interval_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(WORKLOAD + "interval: 5s\nslos: "
                                     "['latency p99 < 1s in every 2s window']\n")
    with pytest.raises(WorkloadError, match="shorter than the 5s interval"):
        load_workload(tmp_path / "w.yaml")


# -- windows judged from 1-s interval histograms -------------------------------------------

PHASES = [PhaseInfo(name="measure", start_s=0.0, duration_s=1200.0, warmup=False)]


def feed(judge: LiveJudge, seconds: int, rate: int, slow_from: float, slow_to: float,
         seed: int = 1) -> None:
    """Twenty minutes of 1-s intervals at `rate` req/s; between slow_from and
    slow_to every request takes 500-900 ms, otherwise 10-40 ms."""
    rng = random.Random(seed)
    for i in range(seconds):
        h = new_histogram()
        slow = slow_from <= i < slow_to
        for _ in range(rate):
            record_us(h, int(rng.uniform(500e3, 900e3) if slow else rng.uniform(10e3, 40e3)))
        # Rotations land a few ms late, as they do in a real run.
        iv = Interval(i + 0.003 * (i > 0), i + 1 + 0.003, completed=rate)
        judge.on_interval(iv, {("latency", "measure", "chat", "default"): h},
                          Counter({("completed", "measure", "chat", "default"): rate}))


def window_verdicts(slow_from: float,
                    slow_to: float) -> tuple[SLOResult, SLOResult, SLOResult]:
    every = parse_objective("latency p99 < 300ms in every 60s window")
    most = parse_objective("latency p99 < 300ms in at least 95% of 60s windows")
    whole = parse_objective("latency p99 < 300ms in at least 50% of 20m windows")
    judge = LiveJudge([every, most, whole], Phases(PHASES), strict=False,
                      on_breach=lambda *_: None)
    feed(judge, 1200, 50, slow_from, slow_to)
    results = judge.results()
    return results[every.name], results[most.name], results[whole.name]


def test_one_bad_60s_window_fails_every_window_and_passes_95_percent() -> None:
    every, most, whole = window_verdicts(300, 330)  # inside window 5 (300-360 s)
    assert every.windows is not None and whole.windows is not None
    assert every.observed is not None and whole.observed is not None
    assert every.verdict == "fail" and most.verdict == "pass"
    assert every.windows.total == 20 and every.windows.passed == 19
    assert every.windows.worst_start_s == pytest.approx(300, abs=0.1)
    assert every.observed >= 500  # half the window's requests were slow
    # One 20-minute window: 30 slow seconds are 2.5% of it, so its p99 shows them.
    assert whole.windows.total == 1 and whole.observed > 300
    counts = [w.samples for w in every.windows.series]
    assert counts == [3000] * 20


def test_two_bad_windows_fail_the_95_percent_rule_too() -> None:
    every, most, _ = window_verdicts(90, 130)
    assert every.windows is not None
    # 90-130 s straddles windows 1 and 2: both fail, 18/20 = 90% < 95%.
    assert every.windows.passed == 18 and most.verdict == "fail"


def test_windows_with_too_few_samples_are_not_counted() -> None:
    judge = LiveJudge([parse_objective("latency p99 < 300ms in every 60s window")],
                      Phases(PHASES), strict=False, on_breach=lambda *_: None)
    feed(judge, 1200, 2, 0, 0)  # 120 samples a window, all clear: 0.99^120 = 30% decides nothing
    r = next(iter(judge.results().values()))
    assert r.verdict == "inconclusive" and r.reason == \
        "none of 20 windows was decided: 20 had too few samples"
    decided = LiveJudge([parse_objective("latency p99 < 300ms in every 60s window")],
                        Phases(PHASES), strict=False, on_breach=lambda *_: None)
    feed(decided, 1200, 5, 0, 0)  # 300 a window, none above: each window passes
    assert next(iter(decided.results().values())).verdict == "pass"


def test_strict_windows_say_the_threshold_was_inside_not_too_few_samples() -> None:
    """1,200 samples a window, p99 at its threshold: with --strict each
    window is undecided for its interval, not for want of samples."""
    judge = LiveJudge([parse_objective("latency p99 < 39.7ms in every 60s window")],
                      Phases(PHASES), strict=True, on_breach=lambda *_: None)
    feed(judge, 1200, 20, 0, 0)  # 10-40 ms uniform: p99 is 39.7 ms
    r = next(iter(judge.results().values()))
    assert "(--strict)" in r.reason and "too few samples" not in r.reason, r.reason


def test_abort_fires_on_a_clear_breach_after_the_delay() -> None:
    fired = []
    o = parse_objective("latency p99 < 300ms").model_copy(update={"abort": True,
                                                                   "abort_after_s": 30})
    judge = LiveJudge([o], Phases(PHASES), strict=False, on_breach=lambda r, at: fired.append(at))
    feed(judge, 120, 100, 0, 5)  # slow from the start: p99 breached at once
    assert fired and fired[0] == pytest.approx(30, abs=1.1)  # not before `after`
    row = judge.results()[o.name]
    assert row.verdict == "fail" and "aborted the run at" in row.reason
    # The row's interval is the 95% one over all measured, as every row's;
    # the breach was judged at 99.9% on the first 30 s.
    (t,) = judge.tracked
    at_95 = evaluate(o, [t.hist], t.totals(), n_eff=t.n_eff())
    assert (row.ci_low, row.ci_high) == (at_95.ci_low, at_95.ci_high)
    assert judge.breach is not None and judge.breach[0].ci_low != row.ci_low
    quiet = LiveJudge([o], Phases(PHASES), strict=False, on_breach=lambda r, at: fired.append(at))
    feed(quiet, 120, 100, 0, 0)
    assert len(fired) == 1 and quiet.breach is None


def test_abort_delay_counts_from_the_scopes_start() -> None:
    """A phase starting at 60 s: its abort SLO is not judged before 60 + 30 s."""
    phases = [PhaseInfo(name="calm", start_s=0.0, duration_s=60.0, warmup=False),
              PhaseInfo(name="spike", start_s=60.0, duration_s=60.0, warmup=False)]
    o = parse_objective("latency p99 < 300ms", scope="phase:spike").model_copy(
        update={"abort": True, "abort_after_s": 30})
    fired = []
    judge = LiveJudge([o], Phases(phases), strict=False,
                      on_breach=lambda r, at: fired.append(at))
    rng = random.Random(3)
    for i in range(120):
        h = new_histogram()
        for _ in range(100):
            record_us(h, int(rng.uniform(500e3, 900e3)))  # slow all along
        phase = "calm" if i < 60 else "spike"
        judge.on_interval(Interval(i, i + 1), {("latency", phase, "chat", "default"): h},
                          Counter({("completed", phase, "chat", "default"): 100}))
    assert fired and fired[0] == pytest.approx(90, abs=1.1)


def test_rates_without_measured_time_are_inconclusive() -> None:
    from loadkit.slo.evaluate import Counts, evaluate
    r = evaluate(parse_objective("throughput >= 5 req/s"), [], Counts(0, 0, 0, 0.0))
    assert r.verdict == "inconclusive" and "no measured time" in r.reason


def test_windows_failing_on_errors_alone_have_no_value_and_no_crash() -> None:
    """Every window has more failures than the 1% tail: each fails without a
    value, and the verdict says so (a crash here would lose the run)."""
    judge = LiveJudge([parse_objective("latency p99 < 300ms in every 60s window")],
                      Phases(PHASES), strict=False, on_breach=lambda *_: None)
    for i in range(180):
        h = new_histogram()
        for _ in range(50):
            record_us(h, 20_000)
        judge.on_interval(Interval(i, i + 1), {("latency", "measure", "chat", "default"): h},
                          Counter({("completed", "measure", "chat", "default"): 50,
                                   ("errors", "measure", "chat", "default"): 5}))
    r = next(iter(judge.results().values()))
    assert r.verdict == "fail" and r.observed is None
    assert r.windows is not None
    assert r.windows.judged == 3 and r.windows.passed == 0


def test_slow_seconds_together_are_worth_fewer_samples_than_slow_requests_apart() -> None:
    """The same 1% of slow requests, in one 12-s burst or spread evenly: the
    burst's requests are correlated (n_eff far under n), the spread ones not."""
    o = parse_objective("latency p99 < 300ms")
    burst = LiveJudge([o], Phases(PHASES), strict=False, on_breach=lambda *_: None)
    feed(burst, 1200, 100, 600, 612)
    spread = LiveJudge([o], Phases(PHASES), strict=False, on_breach=lambda *_: None)
    rng = random.Random(3)
    for i in range(1200):  # the same 1,200 slow requests, one per second
        h = new_histogram()
        for j in range(100):
            record_us(h, int(rng.uniform(500e3, 900e3) if j == 0 else rng.uniform(10e3, 40e3)))
        spread.on_interval(Interval(i, i + 1, completed=100),
                           {("latency", "measure", "chat", "default"): h},
                           Counter({("completed", "measure", "chat", "default"): 100}))
    n = 1200 * 100
    burst_n, spread_n = burst.n_eff()[o.name], spread.n_eff()[o.name]
    assert burst_n is not None and spread_n is not None
    assert burst_n < 0.05 * n and spread_n >= 0.9 * n, (burst_n, spread_n)


def test_an_slo_given_twice_is_judged_once_unless_its_settings_differ(tmp_path: Path) -> None:
    """Repeated in an `--slo` file (or in the workload), the same SLO is one
    objective; the same SLO with another `abort` is ambiguous: exit 2."""
    (tmp_path / "w.yaml").write_text(
        "name: w\nduration: 1s\narrival: {rate: 1}\n"
        "scenarios: [{name: c, kind: openai-chat}]\n"
        "slos: ['latency p99 < 1s', 'ttft p99 trend < 1 ms/s', 'ttft p99 trend < 1 ms/s']\n")
    (tmp_path / "slo.yaml").write_text("slos: ['latency p99 < 1s', 'error_rate < 1%']\n")
    w = load_workload(tmp_path / "w.yaml",
                      Overrides(slo_files=(str(tmp_path / "slo.yaml"),))).workload
    assert [o.name for o in w.objectives()] == [
        "latency p99 < 1s [all]", "ttft p99 trend < 1 ms/s [all]", "error_rate < 1% [all]"]
    (tmp_path / "slo.yaml").write_text("slos: [{slo: 'latency p99 < 1s', abort: true}]\n")
    with pytest.raises(WorkloadError) as err:
        load_workload(tmp_path / "w.yaml", Overrides(slo_files=(str(tmp_path / "slo.yaml"),)))
    assert err.value.exit_code == ExitCode.BAD_INPUT
    assert "latency p99 < 1s [all] is given twice with different settings" in str(err.value)


def test_a_verdict_reached_only_after_the_measured_phases_ended_nothing_early() -> None:
    """stop_when_decided: at 2 req/s, all clear, the always-valid test decides
    `latency p99 < 300ms` at its 436th request, 218 s in. Within a 229-s
    phase that ends the run early; after a 210-s phase it comes in the
    drain, which ends anyway: not 'decided early'."""
    def decided(phase_s: float) -> float | None:
        phases = [PhaseInfo(name="measure", start_s=0.0, duration_s=phase_s, warmup=False)]
        seen: list[float] = []
        judge = LiveJudge([parse_objective("latency p99 < 300ms")], Phases(phases),
                          strict=False, on_breach=lambda *_: None,
                          on_decided=lambda d: seen.append(d.at_s))
        feed(judge, 230, 2, 0, 0)
        assert len(seen) <= 1
        return seen[0] if seen else None

    assert samples_to_decide(0.01) == 436
    assert decided(229) == pytest.approx(218, abs=0.01)
    assert decided(210) is None


def test_a_windowed_rate_counts_what_ended_in_its_phase_over_its_own_time() -> None:
    """Phases a (0-10 s) then b (10-20 s), 10 req/s ending in each second: a's
    5-s windows deliver 10 req/s. Its stragglers (sent for a, ended in b's
    first second) join a's counts but not its rate, and b's later intervals
    do not stretch a's last window to the end of the run (50 requests over
    15 s read 3.3 req/s)."""
    phases = Phases([PhaseInfo(name="a", start_s=0.0, duration_s=10.0, warmup=False),
                     PhaseInfo(name="b", start_s=10.0, duration_s=10.0, warmup=False)])
    rate = parse_objective("throughput >= 9 req/s in every 5s window", scope="phase:a")
    judge = LiveJudge([rate], phases, strict=False, on_breach=lambda *_: None)
    for i in range(20):
        ended, sent_for = ("a", "a") if i < 10 else ("b", "a" if i == 10 else "b")
        judge.on_interval(Interval(i, i + 1, completed=10), {},
                          Counter({("completed", sent_for, "chat", "default"): 10,
                                   ("served_completed", ended, "chat", "default"): 10}))
    r = judge.results()[rate.name]
    assert r.windows is not None and [w.observed for w in r.windows.series] == [10.0, 10.0]
    assert r.verdict == "pass"
