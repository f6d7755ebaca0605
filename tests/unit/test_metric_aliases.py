"""Other load testers' metric names in SLOs: taken where the quantity is the
same, refused with the reason where it is not (loadkit.workload.metric_aliases)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from loadkit.errors import ExitCode, InputError, WorkloadError
from loadkit.workload.loader import Overrides, load_workload
from loadkit.workload.metric_aliases import (
    BARE,
    PEERS,
    TABLE,
    RefusedMetric,
    peer_name,
    resolve_metric,
)
from loadkit.workload.slo_spec import METRICS, TIME_METRICS, parse_objective

WORKLOAD = """\
name: t
duration: 60s
arrival: {rate: 5}
scenarios:
  - name: chat
    kind: openai-chat
"""
DOC = Path(__file__).resolve().parents[2] / "docs" / "metric-vocabulary.md"


@pytest.mark.parametrize("alias,canonical", [
    ("time_to_first_token", "ttft"),  # AIPerf
    ("Time_To_First_Token", "ttft"),  # any case
    ("time_to_first_token_ms", "ttft"),  # GuideLLM
    ("time_to_first_output_token", "ttfo"),
    ("guidellm.time_to_first_output_token_ms", "ttfo"),
    ("e2el", "service_time"),  # vLLM: from the actual send, not the intended time
    ("request_latency", "service_time"),
    ("inter_token_latency", "tpot"),  # AIPerf's ITL is a mean per request
    ("aiperf.inter_token_latency", "tpot"),
    ("inter_chunk_latency", "inter_chunk"),
    ("vllm.itl", "inter_chunk"),  # vLLM's ITL is per chunk
    ("vllm.tpot", "tpot"),
    ("inference_perf.time_to_first_token", "ttfo"),  # content only, reasoning not counted
    ("inference_perf.time_per_output_token", "tpot"),
])
def test_time_aliases_mean_the_same_objective(alias: str, canonical: str) -> None:
    assert parse_objective(f"{alias} p99 < 2s") == parse_objective(f"{canonical} p99 < 2s")


@pytest.mark.parametrize("text,canonical", [
    ("request_throughput >= 5 req/s", "throughput >= 5 req/s"),
    ("requests_per_second >= 5 req/s", "throughput >= 5 req/s"),
    ("output_token_throughput >= 500 tok/s", "output_tokens_per_s >= 500 tok/s"),
    ("output_throughput >= 500 tok/s", "output_tokens_per_s >= 500 tok/s"),
    ("output_tokens_per_second >= 500 tok/s", "output_tokens_per_s >= 500 tok/s"),
    ("request_error_rate < 1%", "error_rate < 1%"),
    ("request_goodput >= 3 req/s", "goodput >= 3 req/s"),
    ("e2el p99 trend < 10%/h", "service_time p99 trend < 10%/h"),
    ("e2el p99 < 300ms in every 60s window", "service_time p99 < 300ms in every 60s window"),
])
def test_rate_and_windowed_aliases(text: str, canonical: str) -> None:
    o = parse_objective(text, "tenant:a")
    assert o == parse_objective(canonical, "tenant:a")
    assert o.text == canonical  # outputs name the objective in loadkit's words


def test_loadkits_own_names_come_first() -> None:
    """Bare `itl` is loadkit's per-token ITL, not vLLM's per-chunk one."""
    assert parse_objective("itl p99 < 5ms").metric == "itl"
    assert parse_objective("ttft p99 < 5ms").text == "ttft p99 < 5ms"
    assert resolve_metric("prom.vllm:num_requests_waiting", METRICS) == \
        "prom.vllm:num_requests_waiting"


@pytest.mark.parametrize("written,needle", [
    ("time_per_output_token_ms", "the wait for the first token included"),
    ("inter_token_latency_ms", "weighted by its tokens"),
    ("output_token_throughput_per_user", "tpot p(100-NN) <= 1000/X ms"),
    ("total_token_throughput", "write output_tokens_per_s"),
    ("tokens_per_second", "prompt tokens too"),
    ("time_to_second_token", "inter_chunk"),
    ("inference_perf.inter_token_latency", "write itl"),
    ("inference_perf.normalized_time_per_output_token", "service_time is the whole request"),
])
def test_refused_aliases_say_what_differs(written: str, needle: str) -> None:
    with pytest.raises(RefusedMetric, match="does not take as an alias") as info:
        parse_objective(f"{written} p99 < 2s")
    assert needle in str(info.value)
    assert "metric-vocabulary.md" in str(info.value)


def test_unknown_names_keep_the_error_and_suggest_the_near_alias() -> None:
    with pytest.raises(ValueError, match="unknown metric 'time_to_first_tokn'; known: latency, ") \
            as info:
        parse_objective("time_to_first_tokn p99 < 1s")
    assert str(info.value).endswith("did you mean 'time_to_first_token'?")
    with pytest.raises(ValueError, match="of AIPerf's names loadkit takes time_to_first_token"):
        parse_objective("aiperf.ttft p99 < 1s")  # AIPerf has no `ttft`; its tag is spelled out


def load_with_slo(tmp_path: Path, slo_text: str) -> list:
    (tmp_path / "w.yaml").write_text(WORKLOAD)
    (tmp_path / "slo.yaml").write_text(slo_text)
    loaded = load_workload(tmp_path / "w.yaml",
                           Overrides(slo_files=(str(tmp_path / "slo.yaml"),)))
    return loaded.workload.objectives()


def test_an_slo_file_in_another_tools_words_parses_to_the_same_objectives(
        tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    theirs = load_with_slo(tmp_path / "a", (
        "slos:\n  - time_to_first_token p99 < 2s\n  - e2el p99 < 10s\n"
        "  - {slo: 'inter_token_latency p90 < 50ms', abort: true}\n"
        "  - request_throughput >= 4 req/s\n"
        "tenants: {default: ['vllm.itl p99 < 100ms']}\n"))
    ours = load_with_slo(tmp_path / "b", (
        "slos:\n  - ttft p99 < 2s\n  - service_time p99 < 10s\n"
        "  - {slo: 'tpot p90 < 50ms', abort: true}\n"
        "  - throughput >= 4 req/s\n"
        "tenants: {default: ['inter_chunk p99 < 100ms']}\n"))
    assert theirs == ours
    assert [o.name for o in theirs][:2] == ["ttft p99 < 2s [all]", "service_time p99 < 10s [all]"]


def test_a_refused_alias_in_an_slo_file_exits_2_at_its_line(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError) as info:
        load_with_slo(tmp_path, "slos:\n  - ttft p99 < 1s\n  - time_per_output_token_ms p99 < 50ms\n")
    assert isinstance(info.value, InputError) and info.value.exit_code == ExitCode.BAD_INPUT
    message = str(info.value)
    assert "GuideLLM's time_per_output_token_ms" in message and "tpot excludes" in message
    assert (3, "slos[1]") in [(line, key) for line, key, _ in info.value.problems], message


def test_every_alias_names_a_loadkit_metric() -> None:
    for e in TABLE:
        assert e.peer in PEERS and e.name == e.name.lower(), e
        assert e.metric is None or e.metric in METRICS, e
        assert e.metric is not None or e.note, f"{e} is refused without a reason"
        assert peer_name(f"{e.peer}.{e.name}") == e


def test_bare_names_never_contradict_one_another() -> None:
    """A bare name several tools use means the same loadkit metric in each
    (or is refused by each); else it must be written with its tool's prefix."""
    outcomes: dict[str, set[str | None]] = defaultdict(set)
    for e in TABLE:
        if e.peer in BARE and e.name not in METRICS:
            outcomes[e.name].add(e.metric)
    assert {name: o for name, o in outcomes.items() if len(o) > 1} == {}


def test_aliases_of_time_metrics_need_a_statistic_like_their_metric() -> None:
    assert "tpot" in TIME_METRICS
    with pytest.raises(ValueError, match="tpot needs a statistic"):
        parse_objective("inter_token_latency < 50ms")


def test_the_vocabulary_page_lists_every_name() -> None:
    page = DOC.read_text()
    missing = [f"{e.peer}.{e.name}" for e in TABLE
               if f"`{e.name}`" not in page and f"`{e.peer}.{e.name}`" not in page]
    assert missing == [], f"{DOC.name} does not list {missing}"


def test_goodput_rules_take_other_tools_names_too() -> None:
    from loadkit.workload.slo_spec import parse_condition
    assert parse_condition("e2el <= 2s").metric == "service_time"
    assert parse_condition("time_to_first_token <= 200ms").metric == "ttft"
    with pytest.raises(ValueError, match="inter_token_latency_ms"):
        parse_condition("inter_token_latency_ms <= 50ms")
