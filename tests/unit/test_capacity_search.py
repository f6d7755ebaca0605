"""The capacity search against synthetic oracles whose capacity we set: the
interval holds it at the precision asked, in no more probes than growth plus
bisection need; inconclusive probes are extended, the budget holds, and a
probe where the generator was the limit never counts as the server failing."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest

from loadkit.capacity.probe import classify
from loadkit.capacity.runner import evidence
from loadkit.capacity.search import (
    Conclusion,
    Outcome,
    Probe,
    Settings,
    Status,
    bisections_needed,
    search,
)
from loadkit.result.model import RunResult, Verdict
from loadkit.slo.confidence import always_valid_decides, samples_to_decide
from loadkit.workload.slo_spec import parse_objective
from support.synthetic_run import synthetic_day


def oracle(capacity: float, cost: float = 1.2, overhead: float = 0.0
           ) -> Callable[[Probe], Outcome]:
    """Passes at or below `capacity`; a probe takes `cost` x its duration plus `overhead`."""
    def run(p: Probe) -> Outcome:
        return Outcome(Status.PASS if p.value <= capacity else Status.FAIL,
                       p.duration_s * cost + overhead)
    return run


def growth_probes(start: float, capacity: float, growth: float) -> int:
    """Probes until the first failure, from a start below capacity."""
    return math.floor(math.log(capacity / start, growth)) + 2


@pytest.mark.parametrize("capacity,start,precision", [
    (42.1, 10.0, 0.05), (400.0, 300.0, 0.05), (1234.5, 1.0, 0.01), (7.3, 7.0, 0.10),
    (99.9, 25.0, 0.02)])
def test_interval_holds_the_capacity_at_the_precision_in_bounded_probes(
        capacity: float, start: float, precision: float) -> None:
    s = Settings(start=start, low=start, precision=precision, probe_s=10, budget_s=1e9)
    found = search(oracle(capacity), s)
    assert found.conclusion == Conclusion.FOUND
    assert found.passed is not None and found.failed is not None and found.width is not None
    assert found.passed <= capacity < found.failed
    assert found.width <= precision
    bound = growth_probes(start, capacity, 2.0) + bisections_needed(1.0, 2.0, precision)
    assert len(found.trials) <= bound
    # Each bisection probe lies strictly inside the interval known before it.
    lo: float | None = None
    hi: float | None = None
    for probe, outcome in found.trials:
        if lo is not None and hi is not None:
            assert lo < probe.value < hi
        if outcome.status == Status.PASS:
            lo = probe.value
        else:
            hi = probe.value


def test_a_start_above_capacity_falls_until_a_load_passes() -> None:
    found = search(oracle(13.0), Settings(start=100.0, low=100.0 / 64, precision=0.05,
                                          probe_s=5, budget_s=1e9))
    assert found.conclusion == Conclusion.FOUND
    assert found.passed is not None and found.failed is not None and found.width is not None
    assert found.passed <= 13.0 < found.failed and found.width <= 0.05
    assert [p.value for p, _ in found.trials[:4]] == [100.0, 50.0, 25.0, 12.5]


def test_a_probe_at_a_low_load_lasts_long_enough_for_its_evidence() -> None:
    """The issue's staging endpoint: p99 needs 2 x 436 requests to pass by
    the always-valid test; at 5 req/s that is 174 s, not three rounds of a
    60-s probe; at 40 req/s the 60 s hold them."""
    needed = evidence([parse_objective("latency p99 < 1s"), parse_objective("error_rate < 5%")])
    assert needed == 2 * samples_to_decide(0.01) == 872
    found = search(oracle(30.0), Settings(start=5, low=5, probe_s=60, budget_s=1e9,
                                          evidence=needed))
    durations = {p.value: p.duration_s for p, _ in found.trials}
    assert durations[5] == pytest.approx(872 / 5) and durations[40] == 60
    # a closed loop's load is users, not requests per second: probe_s as before
    users = search(oracle(30.0), Settings(start=5, low=5, probe_s=60, budget_s=1e9,
                                          evidence=needed, integer=True))
    assert {p.duration_s for p, _ in users.trials} == {60}


def test_samples_to_decide_is_the_first_count_the_test_passes() -> None:
    for allowed in (0.5, 0.05, 0.01, 0.001):
        n = samples_to_decide(allowed)
        assert always_valid_decides(0, 0, n, allowed) is True
        assert always_valid_decides(0, 0, n - 1, allowed) is None


def test_bisections_needed_is_the_geometric_count() -> None:
    assert bisections_needed(100, 200, 0.05) == 4  # ln2/ln1.05 = 14.2 -> 2^4 = 16
    assert bisections_needed(100, 104, 0.05) == 0
    assert bisections_needed(1, 1024, 0.01) == math.ceil(math.log2(math.log(1024)
                                                                    / math.log(1.01)))


def test_range_ends_are_reported_not_guessed() -> None:
    above = search(oracle(1e9), Settings(start=10, low=10, high=100, probe_s=1, budget_s=1e9))
    assert above.conclusion == Conclusion.ABOVE_RANGE
    assert (above.passed, above.failed) == (100, None)
    assert [p.value for p, _ in above.trials] == [10, 20, 40, 80, 100]
    below = search(oracle(1.0), Settings(start=10, low=10, probe_s=1, budget_s=1e9))
    assert below.conclusion == Conclusion.BELOW_RANGE
    assert (below.passed, below.failed) == (None, 10) and len(below.trials) == 1


def test_concurrency_search_ends_on_adjacent_whole_numbers() -> None:
    found = search(oracle(37), Settings(start=4, low=1, precision=0.001, probe_s=1,
                                        budget_s=1e9, integer=True))
    assert (found.passed, found.failed) == (37, 38)
    assert all(p.value == int(p.value) for p, _ in found.trials)
    assert len(found.trials) <= growth_probes(4, 37, 2.0) + bisections_needed(32, 64, 1 / 64)


def test_an_inconclusive_probe_is_extended_with_more_samples_not_guessed() -> None:
    capacity = 50.0

    def run(p: Probe) -> Outcome:
        # Near the capacity a first-length probe has too few samples to decide.
        if abs(p.value - capacity) / capacity < 0.15 and p.duration_s < 20:
            return Outcome(Status.INCONCLUSIVE, p.duration_s)
        return oracle(capacity, cost=1.0)(p)

    found = search(run, Settings(start=20, low=20, precision=0.05, probe_s=10, budget_s=1e9))
    assert found.conclusion == Conclusion.FOUND
    assert found.passed is not None and found.failed is not None
    assert found.passed <= capacity < found.failed
    undecided = [(p, o) for p, o in found.trials if o.status == Status.INCONCLUSIVE]
    assert undecided, "the oracle was never asked near its capacity"
    for probe, _ in undecided:  # each is followed by the same load, twice as long
        i = found.trials.index((probe, _))
        again = found.trials[i + 1][0]
        assert (again.value, again.duration_s, again.attempt) == \
            (probe.value, probe.duration_s * 2, probe.attempt + 1)


def test_a_probe_that_stays_inconclusive_ends_the_search_as_such() -> None:
    def run(p: Probe) -> Outcome:
        return Outcome(Status.INCONCLUSIVE if p.value >= 40 else Status.PASS, p.duration_s)

    found = search(run, Settings(start=10, low=10, probe_s=10, budget_s=1e9, extensions=2))
    assert found.conclusion == Conclusion.INCONCLUSIVE and found.stopped_at == 40
    assert (found.passed, found.failed) == (20, None)  # never counted as a failure
    assert [(p.value, p.duration_s) for p, _ in found.trials[-3:]] == \
        [(40, 10), (40, 20), (40, 40)]


def test_total_time_stays_within_the_budget() -> None:
    rng = random.Random(3)
    for _ in range(200):
        budget = rng.uniform(30, 600)
        probe_s = rng.uniform(2, 20)
        capacity = rng.uniform(1, 1000)
        cost, overhead = rng.uniform(1.0, 2.0), rng.uniform(0, 5)

        def run(p: Probe, capacity: float = capacity, cost: float = cost,
                overhead: float = overhead) -> Outcome:
            status = Status.INCONCLUSIVE if rng.random() < 0.3 else \
                (Status.PASS if p.value <= capacity else Status.FAIL)
            # the first guess of the cost is what the caller estimates it to be
            return Outcome(status, p.duration_s * cost + overhead)

        s = Settings(start=rng.uniform(1, 50), low=0.1, probe_s=probe_s, budget_s=budget,
                     precision=0.01, cost_ratio=cost + overhead / probe_s)
        found = search(run, s)
        assert found.spent_s <= budget + 1e-6
        assert found.spent_s == pytest.approx(sum(o.elapsed_s for _, o in found.trials),
                                              abs=1e-3)


def test_budget_stops_before_a_probe_that_would_not_fit() -> None:
    found = search(oracle(1000.0, cost=1.5, overhead=2.0),
                   Settings(start=10, low=10, probe_s=10, budget_s=60, cost_ratio=1.7))
    assert found.conclusion == Conclusion.BUDGET
    assert len(found.trials) == 3 and found.spent_s == 51.0  # a 4th (~17 s) would not fit
    assert (found.passed, found.failed) == (40, None)


@pytest.mark.parametrize("status", [Status.GENERATOR_LIMITED, Status.UNTRUSTED])
def test_generator_limited_probes_are_never_counted_as_the_server_failing(status: Status) -> None:
    def run(p: Probe) -> Outcome:
        if p.value >= 160:  # the generator cannot send this much; the server could
            return Outcome(status, p.duration_s)
        return oracle(1000.0)(p)

    found = search(run, Settings(start=10, low=10, probe_s=1, budget_s=1e9))
    assert found.conclusion == Conclusion(status.value) and found.stopped_at == 160
    assert found.failed is None and found.passed == 80


def _run(**changes: Any) -> RunResult:
    doc = synthetic_day(intervals=10)
    for key, value in changes.items():
        part, field = key.split("__")
        doc[part] = {**doc[part], field: value}
    return RunResult.model_validate(doc)


def test_classify_calls_a_late_or_dropping_generator_the_limit_whatever_the_slos_say() -> None:
    assert classify(_run())[0] == Status.PASS
    late = _run(health__saturated=True, health__lateness_p99_ms=25.0)
    status, reasons = classify(late.model_copy(update={"verdict": Verdict.FAIL}))
    assert status == Status.GENERATOR_LIMITED and "lateness p99 25.00 ms" in reasons[0]
    dropped = _run(counts__dropped=500)
    status, reasons = classify(dropped.model_copy(update={"verdict": Verdict.FAIL}))
    assert status == Status.GENERATOR_LIMITED and any("dropped" in r for r in reasons)
    short = _run(counts__scheduled={"soak/default": 864_024 * 2})  # sent half the schedule
    assert classify(short)[0] == Status.GENERATOR_LIMITED
    # The other half sent, and left by impatient clients: the generator kept up.
    left = _run(counts__scheduled={"soak/default": 864_024 * 2},
                counts__abandoned={"patience": 864_024})
    assert classify(left)[0] == Status.PASS
    failed = _run().model_copy(update={"verdict": Verdict.FAIL})
    assert classify(failed) == (Status.FAIL, [])


def test_classify_calls_an_interrupted_probe_untrusted_not_the_generator_s_limit() -> None:
    """Ctrl-C in a probe: it sent part of its schedule, as a slow generator
    would, but the generator kept up (an audit saw "GENERATOR LIMITED")."""
    cut = _run(counts__scheduled={"soak/default": 864_024 * 2}).model_copy(
        update={"untrusted_reasons": ["interrupted before the end of the schedule"]})
    assert classify(cut) == (Status.UNTRUSTED, ["interrupted before the end of the schedule"])
