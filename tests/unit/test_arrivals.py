"""Arrival processes, token distributions, traces and schedules: pure and seeded."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from loadkit.arrivals import TraceError, load_trace, sample_tokens, schedule
from loadkit.arrivals.processes import arrival_times
from loadkit.arrivals.summary import sparkline, summarize
from loadkit.arrivals.trace import replay
from loadkit.errors import WorkloadError
from loadkit.workload.arrival_specs import ArrivalSpec, Diurnal, Trace
from loadkit.workload.loader import load_workload
from loadkit.workload.models import Workload
from loadkit.workload.scaling import time_scaled, with_measured_duration
from loadkit.workload.scenarios import Tokens

ROOT = Path(__file__).resolve().parents[2]
AZURE = ROOT.parent / "shared" / "data" / "azure-llm-inference-2023" / "AzureLLMInferenceTrace_conv.csv"
spec = TypeAdapter(ArrivalSpec).validate_python
tokens = TypeAdapter(Tokens).validate_python


def times(arrival: dict, duration: float, seed: int = 1) -> list[float]:
    return list(arrival_times(spec(arrival), duration, random.Random(seed)))


def within_sampling_error(observed: int, expected: float, sigmas: float = 4.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(max(expected, 1.0))


def test_poisson_passes_kolmogorov_smirnov() -> None:
    from scipy import stats
    t = times({"process": "poisson", "rate": 50}, 400.0)
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert stats.kstest(gaps, "expon", args=(0, 1 / 50)).pvalue > 0.01
    # and the test has teeth: gamma gaps with cv 2 at the same rate fail it
    g = times({"process": "gamma", "rate": 50, "cv": 2}, 400.0)
    g_gaps = [b - a for a, b in zip(g, g[1:])]
    assert stats.kstest(g_gaps, "expon", args=(0, 1 / 50)).pvalue < 1e-6


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_reproduces_its_coefficient_of_variation(cv: float) -> None:
    t = times({"process": "gamma", "rate": 100, "cv": cv}, 10_000 / 100)
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert len(gaps) > 9000
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(cv, rel=0.10)
    assert len(t) == pytest.approx(10_000, rel=0.1 * max(cv, 1))


def test_onoff_rates_match_the_declared_curve() -> None:
    a = {"process": "onoff", "base_rate": 5, "spike_rate": 60, "spike_length": 2, "period": 10,
         "offset": 1}
    per_second = Counter(int(t) for t in times(a, 400.0))
    on = [s for s in range(400) if s >= 1 and (s - 1) % 10 < 2]
    off = [s for s in range(400) if s not in on]
    assert within_sampling_error(sum(per_second[s] for s in on), 60 * len(on))
    assert within_sampling_error(sum(per_second[s] for s in off), 5 * len(off))
    # each second on its own, too: every spike second is far above every base second
    assert min(per_second[s] for s in on) > max(per_second[s] for s in off)


def test_diurnal_follows_its_curve_compressed_in_time() -> None:
    rates = [10, 10, 40, 80, 40, 10]  # six 10-s "hours" in a 60-s day
    per_second = Counter(int(t) for t in times({"process": "diurnal", "rates": rates,
                                                "day": 60}, 600.0))
    for second in range(0, 60, 3):
        expected = 0.0  # integrate the piecewise-linear curve over [s, s+1) x 10 days
        for k in range(100):
            x = (second + (k + 0.5) / 100) / 10
            i = int(x)
            expected += (rates[i % 6] + (rates[(i + 1) % 6] - rates[i % 6]) * (x - i)) / 100
        observed = sum(per_second[second + 60 * day] for day in range(10))
        assert within_sampling_error(observed, 10 * expected), (second, observed, 10 * expected)


def test_ramp_and_steps() -> None:
    ramp = times({"process": "ramp", "from": 0, "to": 100}, 100.0)
    first, second = sum(t < 50 for t in ramp), sum(t >= 50 for t in ramp)
    assert within_sampling_error(first, 1250) and within_sampling_error(second, 3750)
    steps = times({"process": "steps", "steps": [{"rate": 10, "duration": 20},
                                                 {"rate": 50, "duration": 20}]}, 60.0)
    assert within_sampling_error(sum(t < 20 for t in steps), 200)
    assert within_sampling_error(sum(t >= 20 for t in steps), 2000)  # last step holds


def test_constant_is_exact() -> None:
    t = times({"process": "constant", "rate": 4}, 2.0)
    assert t == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]


def test_constant_is_evenly_spaced() -> None:
    t = times({"process": "constant", "rate": 100}, 2.0)
    assert len(t) == 200 and t[1] - t[0] == pytest.approx(0.01)


def test_poisson_rate_and_exponential_gaps() -> None:
    t = times({"process": "poisson", "rate": 200}, 50.0, seed=4)
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert len(t) == pytest.approx(10_000, rel=0.04)  # 4 sigma is 4%
    assert statistics.mean(gaps) == pytest.approx(1 / 200, rel=0.04)
    # exponential: coefficient of variation 1 (constant would be 0)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, abs=0.05)


def test_token_distributions() -> None:
    rng = random.Random(3)
    ln = [sample_tokens(tokens({"dist": "lognormal", "median": 200, "sigma": 0.5}), rng)
          for _ in range(20_000)]
    assert statistics.median(ln) == pytest.approx(200, rel=0.03)
    u = [sample_tokens(tokens({"dist": "uniform", "min": 5, "max": 9}), rng) for _ in range(2000)]
    assert set(u) == {5, 6, 7, 8, 9}
    n = [sample_tokens(tokens({"dist": "normal", "mean": 100, "std": 10, "max": 110}), rng)
         for _ in range(5000)]
    assert max(n) == 110 and statistics.mean(n) == pytest.approx(98, abs=1.5)
    assert sample_tokens(tokens(42), rng) == 42


MULTI: dict[str, Any] = {
    "seed": 4, "phases": [{"name": "w", "duration": 2, "warmup": True},
                          {"name": "a", "duration": 5}, {"name": "b", "duration": 5}],
    "scenarios": [{"name": "chat", "kind": "openai-chat",
                   "max_tokens": {"dist": "uniform", "min": 1, "max": 100}},
                  {"name": "ping", "kind": "http"}],
    "tenants": [{"name": "x", "arrival": {"rate": 20}},
                {"name": "y", "arrival": {"rate": 5}, "phases": {"b": {"rate": 50}}}]}


def test_same_seed_same_schedule_bit_for_bit() -> None:
    one = list(schedule(Workload.model_validate(MULTI)))
    assert one == list(schedule(Workload.model_validate(MULTI)))
    assert one != list(schedule(Workload.model_validate({**MULTI, "seed": 5})))
    assert all(a.at <= b.at for a, b in zip(one, one[1:]))
    # phases are placed end to end, each tenant's override applies
    in_b = [s for s in one if s.phase == 2]
    assert all(7.0 <= s.at < 12.0 for s in in_b)
    assert within_sampling_error(sum(s.tenant == 1 for s in in_b), 250)


def two_scenarios(**kw: Any) -> Workload:
    """One tenant at Poisson 50/s for 100 s, scenarios a and b weighted 3:1."""
    w = {"duration": 100, "arrival": {"process": "poisson", "rate": 50},
         "scenarios": [{"name": "a", "kind": "http", "weight": 3},
                       {"name": "b", "kind": "http", "weight": 1}]}
    return Workload.model_validate({**w, **kw})


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    one, two = list(schedule(two_scenarios(seed=1))), list(schedule(two_scenarios(seed=1)))
    assert one == two and len(one) > 4000
    assert list(schedule(two_scenarios(seed=2))) != one


def test_scenario_mix_follows_weights_and_schedule_is_ordered() -> None:
    slots = list(schedule(two_scenarios()))
    assert all(a.at <= b.at for a, b in zip(slots, slots[1:]))
    share_a = sum(s.scenario == 0 for s in slots) / len(slots)
    assert share_a == pytest.approx(0.75, abs=0.02)


def test_a_tenant_added_does_not_move_another() -> None:
    base = [s for s in schedule(Workload.model_validate(MULTI)) if s.tenant == 0]
    more = dict(MULTI, tenants=[*MULTI["tenants"], {"name": "z", "arrival": {"rate": 9}}])
    assert [s for s in schedule(Workload.model_validate(more)) if s.tenant == 0] == base


def test_time_scale_keeps_shapes_and_duration_keeps_proportions() -> None:
    w = Workload.model_validate({
        "phases": [{"name": "p", "duration": 600, "arrival": {"process": "diurnal",
                                                              "rates": [1, 9], "day": 600}}],
        "scenarios": [{"name": "s", "kind": "http"}]})
    fast = time_scaled(w, 0.01)
    assert isinstance(fast.phases[0].arrival, Diurnal)
    assert fast.phases[0].duration == 6 and fast.phases[0].arrival.day == 6
    short = with_measured_duration(Workload.model_validate(MULTI), 5)
    assert [p.duration for p in short.phase_list] == [1.0, 2.5, 2.5]


def write_trace(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_azure_trace_loads_and_replays_scaled(tmp_path: Path) -> None:
    p = write_trace(tmp_path, "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:48.6805900,10,5\n"
                    "2023-11-16 18:15:50.1805900,20,6\n")
    rows = load_trace(p)
    assert [(r.prompt_tokens, r.output_tokens) for r in rows] == [(374, 44), (10, 5), (20, 6)]
    trace = spec({"process": "trace", "path": "t.csv", "speedup": 2})
    assert isinstance(trace, Trace)
    assert [round(o, 6) for o, _ in replay(rows, trace, random.Random())] == [0.0, 1.0, 1.75]
    win = spec({"process": "trace", "path": "t.csv", "window": {"start": 1, "end": 3.0}})
    assert isinstance(win, Trace)
    assert [round(o, 6) for o, _ in replay(rows, win, random.Random())] == [1.0]
    double = spec({"process": "trace", "path": "t.csv", "rate_scale": 2})
    assert isinstance(double, Trace)
    assert len(list(replay(rows, double, random.Random()))) == 6


@pytest.mark.parametrize("text,row,fragment", [
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\nyesterday,1,1\n", 3,
     "bad timestamp"),
    ("timestamp,prompt_tokens\n0.5,12\n1.0,many\n", 3, "bad prompt tokens"),
    ("timestamp,output_tokens\n0.5,-1\n", 2, "must be >= 0"),
    ("timestamp\n1.0\nnan\n", 3, "bad timestamp"),
    ("timestamp\ninf\n", 2, "bad timestamp"),
    ("timestamp,prompt_tokens\n0,100000000000\n", 2, "prompt tokens must be <= 10,000,000"),
    ("timestamp,output_tokens\n0,10\n1,10.5\n", 3, "not a whole number"),
    # Rows that fell back to the scenario's counts (an audit): refused.
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:01.0,10\n", 2,
     "has 2 fields, the header 3"),
    ("timestamp,prompt_tokens\n0,10\n1,10,7\n", 3, "has 3 fields, the header 2"),
    ("timestamp,prompt_tokens,output_tokens\n0,,5\n", 2,
     "empty prompt_tokens: give a value, or leave the column out"),
    ("timestamp,prompt_token,output_token\n0,700,800\n", 1,
     "unknown column 'prompt_token', 'output_token'"),
    ("timestamp,prompt_tokens,\n0,1,\n", 1, "a column has no name"),
    ("timestamp,prompt_tokens,prompt_tokens\n0,1,1\n", 1, "'prompt_tokens' is named twice"),
    # A row's number is its line in the file, blank lines counted.
    ("timestamp,prompt_tokens\n0,1\n\n1,2\n\nxx,3\n", 6, "bad timestamp"),
])
def test_bad_trace_rows_are_named(tmp_path: Path, text: str, row: int, fragment: str) -> None:
    with pytest.raises(TraceError, match=fragment) as info:
        load_trace(write_trace(tmp_path, text))
    assert info.value.row == row


def test_a_trace_plays_on_across_its_phases(tmp_path: Path) -> None:
    """A warm-up sends the trace's first seconds and the measured phase what
    follows (each phase once replayed it from its start: the measured phase
    sent the warm-up's rows again, to a cache they had just warmed)."""
    text = "timestamp,prompt_tokens,output_tokens\n" + "".join(
        f"{t * 0.5},{100 + t},{t + 1}\n" for t in range(12))  # a row every 0.5 s
    rows = load_trace(write_trace(tmp_path, text))
    w = Workload.model_validate({
        "warmup": 2, "duration": 3, "scenarios": [{"name": "chat", "kind": "openai-chat"}],
        "arrival": {"process": "trace", "path": "t.csv"}})
    slots = list(schedule(w, {"t.csv": rows}))
    assert [(round(s.at, 3), s.phase, s.prompt_tokens) for s in slots] == \
        [(t * 0.5, 0 if t < 4 else 1, 100 + t) for t in range(10)]


def test_a_trace_written_alike_in_each_phase_plays_on(tmp_path: Path) -> None:
    """Declared in each phase rather than once, the same trace still plays on
    (the measured phase replayed the warm-up's rows: an audit)."""
    text = "timestamp,prompt_tokens\n" + "".join(f"{t * 0.5},{100 + t}\n" for t in range(12))
    rows = load_trace(write_trace(tmp_path, text))
    trace = {"process": "trace", "path": "t.csv"}
    w = Workload.model_validate({
        "scenarios": [{"name": "chat", "kind": "openai-chat"}],
        "phases": [{"name": "warm", "duration": 2, "warmup": True, "arrival": trace},
                   {"name": "meas", "duration": 3, "arrival": dict(trace)}]})
    slots = list(schedule(w, {"t.csv": rows}))
    assert [s.prompt_tokens for s in slots] == [100 + t for t in range(10)]


def test_plan_counts_a_traced_session_s_turns_and_a_drawn_session_s(tmp_path: Path) -> None:
    """A traced session's later turns are in the plan at their offsets with
    their counts (it showed the first turns only: 2 requests of a run that
    sent 4); a drawn session's later turns are counted, their times unknown."""
    rows = [("a", 0.0, 4, 3), (None, 0.5, 6, 1), ("a", 1.0, 8, 5), ("a", 2.0, 9, 6)]
    p = write_trace(tmp_path, "".join(
        json.dumps({"timestamp": t, "prompt_tokens": pt, "output_tokens": o,
                    **({"session_id": sid} if sid else {})}) + "\n"
        for sid, t, pt, o in rows), "s.jsonl")
    w = Workload.model_validate({
        "duration": 4, "scenarios": [{"name": "chat", "kind": "openai-chat"}],
        "arrival": {"process": "trace", "path": "s.jsonl"}})
    plan = summarize(w, {"s.jsonl": load_trace(p)})
    assert sum(plan.requests.values()) == 4 and plan.later_turns == 0
    assert sum(plan.prompt_tokens.values()) == 4 + 6 + 8 + 9
    assert plan.per_second == [2, 1, 1, 0]
    drawn = Workload.model_validate({
        "duration": 2, "arrival": {"process": "constant", "rate": 2},
        "scenarios": [{"name": "chat", "kind": "openai-chat",
                       "session": {"turns": 3, "think_time": "1s"}}]})
    plan = summarize(drawn)
    assert sum(plan.requests.values()) == 4 * 3 and plan.later_turns == 4 * 2
    assert sum(plan.per_second) == 4


def test_a_trace_s_own_quirks_are_read_or_refused(tmp_path: Path) -> None:
    """A spreadsheet's byte-order mark and spaces after the header's commas
    are read; seconds and dates mixed in one file are refused (a dated row
    landed 1.7e9 s later, never sent)."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbftimestamp,prompt_tokens\n0,10\n1,12\n")
    assert [r.prompt_tokens for r in load_trace(bom)] == [10, 12]
    spaced = write_trace(tmp_path, "TIMESTAMP, ContextTokens, GeneratedTokens\n"
                                   "2023-11-16 18:15:01.0,700,800\n", "spaced.csv")
    rows = load_trace(spaced, "azure")
    assert [(r.prompt_tokens, r.output_tokens) for r in rows] == [(700, 800)]
    with pytest.raises(TraceError, match="mixes timestamps in seconds with dates"):
        load_trace(write_trace(tmp_path, "timestamp\n0.5\n2023-11-16T18:15:00\n1.5\n"))


@pytest.mark.parametrize("arrival,said", [
    ({"window": {"start": 1000}}, "its window (1000- s) selects none of its requests "
                                  "(they run from 0 to 2 s after the first)"),
    ({"window": {"start": 0.5, "end": 0.9}}, "its window (0.5-0.9 s) selects none"),
    ({"rate_scale": 0.1}, "rate_scale 0.1 keeps less than one of the 3 requests"),
])
def test_a_trace_that_would_send_nothing_is_refused(tmp_path: Path, arrival: dict,
                                                    said: str) -> None:
    write_trace(tmp_path, "timestamp\n0\n1\n2\n")
    (tmp_path / "w.yaml").write_text(json.dumps({
        "duration": 5, "scenarios": [{"name": "c", "kind": "openai-chat"}],
        "arrival": {"process": "trace", "path": "t.csv", **arrival}}))
    with pytest.raises(WorkloadError, match=re.escape(said)) as info:
        load_workload(tmp_path / "w.yaml")
    assert [key for _, key, _ in info.value.problems] == ["arrival"]  # the workload's key


def test_a_trace_that_cannot_be_read_points_at_its_key(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "duration: 5\nscenarios: [{name: c, kind: openai-chat}]\ntenants:\n"
        "  - name: a\n    arrival: {process: trace, path: nope.csv}\n")
    with pytest.raises(WorkloadError, match="nope.csv: cannot read") as info:
        load_workload(tmp_path / "w.yaml")
    assert [(line, key) for line, key, _ in info.value.problems] == \
        [(5, "tenants[0].arrival.path")]


def test_jsonl_trace(tmp_path: Path) -> None:
    p = write_trace(tmp_path, '{"timestamp": 1.5, "output_tokens": 3}\n\n{"timestamp": 0.5}\n',
                    "t.jsonl")
    assert [(r.time, r.output_tokens) for r in load_trace(p)] == [(0.5, None), (1.5, 3)]
    with pytest.raises(TraceError, match="row 1: not valid JSON"):
        load_trace(write_trace(tmp_path, "{oops\n", "bad.jsonl"))


@pytest.mark.skipif(not AZURE.exists(), reason="shared Azure trace not present")
def test_real_azure_trace_replays_its_first_minute() -> None:
    rows = load_trace(AZURE)
    assert len(rows) == 19366 and all(a.time <= b.time for a, b in zip(rows, rows[1:]))
    w = Workload.model_validate({
        "duration": 60, "scenarios": [{"name": "chat", "kind": "openai-chat"}],
        "arrival": {"process": "trace", "path": "azure.csv"}})
    slots = list(schedule(w, {"azure.csv": rows}))
    expected = [r for r in rows if r.time - rows[0].time < 60]
    assert len(slots) == len(expected) > 0
    assert [(s.prompt_tokens, s.max_tokens) for s in slots] == \
        [(r.prompt_tokens, r.output_tokens) for r in expected]


def test_plan_summary_and_sparkline() -> None:
    s = summarize(Workload.model_validate(MULTI))
    assert sum(s.requests.values()) == len(list(schedule(Workload.model_validate(MULTI))))
    assert len(s.per_second) == 12 and sum(s.per_second) == sum(s.requests.values())
    assert sparkline([0, 5, 10]) == " ▄█"


def test_plan_counts_a_prompt_set_s_tokens_not_the_scenario_s_defaults() -> None:
    """A prompt set's requests are counted at the kept prompts' mean length;
    their output at the prompts' own max_tokens, else the scenario's."""
    from loadkit.workload.prompt_set import Prompt
    short, long = " ".join(["w"] * 10), " ".join(["w"] * 1000)
    prompts = [Prompt(None, short, 7), Prompt(None, long, None)]
    w = Workload.model_validate({
        "duration": 10, "arrival": {"process": "constant", "rate": 2},
        "scenarios": [
            {"name": "all", "kind": "openai-chat", "prompts": "p.jsonl", "max_tokens": 16},
            {"name": "short", "kind": "openai-chat", "prompts": "p.jsonl", "max_tokens": 16,
             "prompts_filter": {"max_tokens": 100}},
            {"name": "drawn", "kind": "openai-chat", "prompt_tokens": 40, "max_tokens": 16}]})
    by_scenario = Counter(w.scenarios[slot.scenario].name for slot in schedule(w))
    s = summarize(w, prompt_sets={"p.jsonl": prompts})
    assert sum(s.prompt_tokens.values()) == pytest.approx(
        by_scenario["all"] * 505 + by_scenario["short"] * 10 + by_scenario["drawn"] * 40)
    assert sum(s.output_tokens.values()) == pytest.approx(
        by_scenario["all"] * (7 + 16) / 2 + by_scenario["short"] * 7 + by_scenario["drawn"] * 16)
    assert s.from_sets == ["all", "short"] and min(by_scenario.values()) > 0


def test_mean_rate_is_exact_for_long_phases() -> None:
    from loadkit.arrivals.processes import mean_rate
    onoff = spec({"process": "onoff", "base_rate": 1, "spike_rate": 100, "spike_length": 1,
                  "period": 10})
    assert mean_rate(onoff, 4000) == pytest.approx(10.9)
    assert mean_rate(onoff, 15) == pytest.approx((100 * 2 + 1 * 13) / 15)
    assert mean_rate(spec({"process": "ramp", "from": 10, "to": 30}), 7) == 20
    steps = spec({"process": "steps", "steps": [{"rate": 10, "duration": 5},
                                                {"rate": 40, "duration": 5}]})
    assert mean_rate(steps, 20) == pytest.approx((50 + 40 * 15) / 20)
    diurnal = spec({"process": "diurnal", "rates": [0, 20], "day": 100})
    assert mean_rate(diurnal, 1000) == pytest.approx(10.0)
