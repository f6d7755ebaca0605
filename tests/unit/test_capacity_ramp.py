"""`loadkit capacity --ramp`, its pure parts: the steps' loads, the ramp as a
workload, the first answer read from its steps, the search it seeds, and
the ramp in capacity.md / .html (the ramp against a real server is in
tests/integration/test_capacity.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from loadkit.capacity.html import render_html
from loadkit.capacity.model import CapacityResult, Ramp, RampStep, SloPoint
from loadkit.capacity.ramp import RAMP_GROWTH, answer, ramp_loads, ramp_workload, step_name
from loadkit.capacity.report import render_markdown
from loadkit.capacity.runner import binding_slo, build
from loadkit.capacity.scale import WARMUP_PHASE, at_load, load_of
from loadkit.capacity.search import Conclusion, Known, Outcome, Probe, Settings, Status, search
from loadkit.errors import InputError
from loadkit.result.model import Verdict
from loadkit.workload.arrival_specs import Poisson
from loadkit.workload.loader import LoadedWorkload, load_workload
from loadkit.workload.models import Phase, Workload

SLO = "latency p99 < 100ms [all]"


def test_steps_grow_by_a_quarter_and_end_on_the_highest_load() -> None:
    loads = ramp_loads(100, 500)
    assert loads[0] == 100 and loads[-1] == 500
    assert all(b / a == pytest.approx(RAMP_GROWTH) for a, b in zip(loads, loads[1:-1]))
    assert loads[-2] < 500 <= loads[-2] * RAMP_GROWTH  # the last is the cap itself
    assert ramp_loads(100, 100) == [100]
    assert len(ramp_loads(1, 1e9)) == 40  # bounded whatever --max says


def step(value: float, status: Status) -> RampStep:
    return RampStep(value=value, phase="ramp", start_s=0.0, status=status, samples=100)


def test_the_first_answer_is_the_step_below_the_first_failing_one() -> None:
    p, i, f = Status.PASS, Status.INCONCLUSIVE, Status.FAIL
    assert answer([step(10, i), step(12.5, p), step(15.6, f), step(19.5, p)]) == (12.5, 15.6)
    assert answer([step(10, f)]) == (None, 10)  # the first step fails: no load to confirm
    assert answer([step(10, i), step(12.5, p)]) == (12.5, None)  # none failed: the highest
    assert answer([]) == (None, None)


def oracle(capacity: float) -> tuple[list[Probe], Callable[[Probe], Outcome]]:
    seen: list[Probe] = []

    def run(p: Probe) -> Outcome:
        seen.append(p)
        return Outcome(Status.PASS if p.value <= capacity else Status.FAIL, p.duration_s)
    return seen, run


def test_a_ramp_failure_bounds_the_search_and_its_time_counts() -> None:
    """Confirm at the step below the failing one, then bisect inside the
    step: no growth probes, and the ramp's time is spent of the budget."""
    seen, run = oracle(41.0)
    s = Settings(start=39.06, low=1.0, high=200.0, precision=0.05, probe_s=10, budget_s=600)
    found = search(run, s, Known(failed=48.83, spent_s=50.0))
    assert seen[0].value == 39.06
    assert found.conclusion == Conclusion.FOUND
    assert found.passed is not None and found.failed is not None
    assert found.passed <= 41.0 < found.failed
    assert found.width is not None and found.width <= 0.05
    assert all(39.06 <= p.value < 48.83 for p in seen)
    assert found.spent_s == pytest.approx(50.0 + sum(p.duration_s for p in seen))
    # The confirmation fails: the search falls below it, as from any start.
    seen, run = oracle(20.0)
    found = search(run, s, Known(failed=48.83))
    assert found.passed is not None and found.failed is not None
    assert found.passed <= 20.0 < found.failed
    # A failure at the start itself is no bound (nothing below it was tried).
    seen, run = oracle(41.0)
    found = search(run, s, Known(failed=39.06))
    assert found.failed is not None and found.failed > 39.06


def workload_file(folder: Path, **changes: object) -> LoadedWorkload:
    spec = {"name": "w", "duration": 30, "target": "http://127.0.0.1:9",
            "scenarios": [{"name": "a", "kind": "http", "path": "/a"},
                          {"name": "b", "kind": "http", "path": "/b"}],
            "tenants": [{"name": "big", "arrival": {"process": "poisson", "rate": 30},
                         "scenarios": ["a"], "slos": ["latency p50 < 1s"]},
                        {"name": "small", "arrival": {"process": "poisson", "rate": 10},
                         "scenarios": ["b"]}],
            "slos": ["latency p99 < 100ms", "error_rate < 1%", "throughput >= 5 req/s"],
            **changes}
    path = folder / "w.yaml"
    path.write_text(yaml.safe_dump(spec))
    return load_workload(path)


def test_the_ramp_is_one_phase_per_step_each_judged_by_the_counted_slos(
        tmp_path: Path) -> None:
    loaded = workload_file(tmp_path)
    loads = ramp_loads(20, 80)
    ramp = ramp_workload(loaded, loads, 4.0).workload
    steps = [p for p in ramp.phase_list if not p.warmup]
    assert [p.name for p in steps] == [step_name(i) for i in range(len(loads))]
    assert all(p.duration == 4.0 for p in steps)
    warm = ramp.phase_list[0]
    assert warm.warmup and warm.name == WARMUP_PHASE
    # Each step carries the counted top-level SLOs (not the throughput, known
    # only at the end, nor the tenant's), and the run stops once one fails.
    assert all(p.slos == ["latency p99 < 100ms", "error_rate < 1%"] for p in steps)
    assert ramp.slos == [] and all(t.slos == [] for t in ramp.tenants)
    assert ramp.stop_when_decided
    # The tenants keep their 3:1 shares at every step's total load.
    for p, total in zip(steps, loads):
        rates = {t.name: spec.rate for t in ramp.tenants
                 if isinstance(spec := ramp.arrival_for(t, p), Poisson)}
        assert rates["big"] + rates["small"] == pytest.approx(total)
        assert rates["big"] == pytest.approx(3 * rates["small"])
    assert load_of(loaded) == pytest.approx(40)


def test_a_step_sends_what_a_probe_at_its_load_sends_in_its_first_phase(
        tmp_path: Path) -> None:
    """Phases of 30 then 10 req/s: the workload's load is their mean, 20. A
    probe at 20 sends 30 in its first phase, and so does the step labelled
    20: the ramp's bound and the probes' loads are one unit for the search."""
    loaded = workload_file(tmp_path, tenants=[], duration=None, arrival=None, phases=[
        {"name": "busy", "duration": 10, "arrival": {"process": "poisson", "rate": 30}},
        {"name": "calm", "duration": 10, "arrival": {"process": "poisson", "rate": 10}}])
    assert load_of(loaded) == pytest.approx(20)

    def first_rate(w: Workload, phase: Phase) -> float:
        return sum(spec.rate for t in w.all_tenants
                   if isinstance(spec := w.arrival_for(t, phase), Poisson))
    loads = [20.0, 25.0, 31.25]
    ramp = ramp_workload(loaded, loads, 2.0).workload
    steps = [p for p in ramp.phase_list if not p.warmup]
    for step_phase, value in zip(steps, loads, strict=True):
        probe = at_load(loaded, value).workload
        assert first_rate(ramp, step_phase) == pytest.approx(
            first_rate(probe, probe.phase_list[0]))
    assert first_rate(ramp, steps[0]) == pytest.approx(30)


def test_a_ramp_needs_counted_slos_and_a_rate(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="decided by counts"):
        ramp_workload(workload_file(tmp_path, slos=["throughput >= 5 req/s"]), [10, 20], 2)
    closed = workload_file(tmp_path, tenants=[], arrival={"process": "closed",
                                                          "concurrency": 4})
    with pytest.raises(InputError, match="closed loops"):
        ramp_workload(closed, [10, 20], 2)


def slo_point(observed: float, verdict: Verdict) -> SloPoint:
    return SloPoint(name=SLO, text=SLO.split(" [")[0], metric="latency", op="<",
                    threshold=100.0, unit="ms", observed=observed, verdict=verdict)


def test_the_ramp_is_reported_and_its_failing_step_can_bind(tmp_path: Path) -> None:
    ramp = Ramp(step_s=2.0, loads=[100, 125, 156.25, 195.3], folder="ramp", elapsed_s=9.0,
                trusted=True, confirm=125, failed=156.25, steps=[
                    RampStep(value=100, phase=step_name(0), start_s=1, status=Status.PASS,
                             samples=200, slos=[slo_point(55.0, Verdict.PASS)]),
                    RampStep(value=125, phase=step_name(1), start_s=3, status=Status.PASS,
                             samples=250, slos=[slo_point(60.0, Verdict.PASS)]),
                    RampStep(value=156.25, phase=step_name(2), start_s=5, status=Status.FAIL,
                             samples=120, slos=[slo_point(501.0, Verdict.FAIL)])])
    # Every probe between 125 and 156.25 passed: the ramp's step is the bound.
    found = search(lambda p: Outcome(Status.PASS, 3.0),
                   Settings(start=125, low=100, high=200, precision=0.05, probe_s=2,
                            budget_s=600), Known(failed=156.25, spent_s=9.0))
    assert found.failed == 156.25
    bound = binding_slo([], found.failed, ramp)
    assert bound is not None and bound.name == SLO
    result: CapacityResult = build(found, [], Settings(start=125, low=100, high=200,
                                                       precision=0.05, probe_s=2,
                                                       budget_s=600), "req/s", ramp=ramp)
    assert result.binding_slo == SLO and result.settings.ramp_s == 2.0
    md = render_markdown(result)
    assert "## Ramp" in md and "| 3 | 156.2 req/s | 5 s | 120 | ✗ |" in md
    assert "ramp**: 3 of 4 steps of 2 s, 100 to 156.2 req/s in 9 s: failed at 156.2 req/s; " \
           "the probes started at 125 req/s" in md
    page = render_html(result)
    assert 'id="ramp"' in page and page.count('<tr class="fail">') == 1
    again = CapacityResult.model_validate_json(result.to_json()).ramp
    assert again is not None and again.failed == 156.25 and len(again.steps) == 3
