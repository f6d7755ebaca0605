"""Workload files: validation with file, line and key; overrides; SLO grammar."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadkit.errors import ExitCode, InputError, WorkloadError
from loadkit.workload.arrival_specs import Constant, OnOff, Poisson
from loadkit.workload.loader import LoadedWorkload, Overrides, load_workload
from loadkit.workload.slo_spec import parse_objective
from loadkit.workload.units import parse_duration, parse_size

BASE = """\
name: t
duration: 10s
scenarios:
  - name: chat
    kind: openai-chat
  - name: ping
    kind: http
    method: GET
    path: /health
tenants:
  - name: a
    arrival: {process: constant, rate: 5}
  - name: b
    arrival: {process: poisson, rate: 15}
    scenarios: [ping]
"""


def load(tmp_path: Path, text: str, **kw: Any) -> LoadedWorkload:
    p = tmp_path / "w.yaml"
    p.write_text(text)
    return load_workload(p, **kw)


def problems(tmp_path: Path, text: str) -> tuple[list[tuple[int | None, str]], str]:
    with pytest.raises(WorkloadError) as info:
        load(tmp_path, text)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    return [(line, key) for line, key, _ in info.value.problems], str(info.value)


def test_valid_file_loads(tmp_path: Path) -> None:
    w = load(tmp_path, BASE).workload
    assert [t.name for t in w.all_tenants] == ["a", "b"]
    assert w.scenarios[0].request_path == "/v1/chat/completions"
    assert w.duration == 10.0


@pytest.mark.parametrize("old,new,line,key", [
    ("rate: 15}", "rate: -1}", 14, "tenants[1].arrival.rate"),
    ("kind: http", "kind: grpc", 7, "scenarios[1].kind"),
    ("    method: GET", "    methud: GET", 8, "scenarios[1].methud"),
    ("duration: 10s", "duration: soon", 2, "duration"),
    ("process: constant", "process: wavy", 12, "tenants[0].arrival.process"),
    ("scenarios: [ping]", "scenarios: []", 15, "tenants[1].scenarios"),  # not "every one"
])
def test_errors_name_line_and_key(tmp_path: Path, old: str, new: str, line: int,
                                  key: str) -> None:
    found, message = problems(tmp_path, BASE.replace(old, new))
    assert (line, key) in found, message
    assert f"w.yaml:{line}: {key}:" in message


SLOS = BASE + """\
slos:
  - latency p99 < 1s
  - slo: error_rate < 1%
    scenario: chat
"""


@pytest.mark.parametrize("old,new,line,key,said", [
    ("scenario: chat", "scenario: nope", 19, "slos[1].scenario", "unknown scenario 'nope'"),
    ("    scenario: chat", "    abort: true", 18, "slos[1]", "can abort"),
    ("  - latency p99 < 1s", "  - latency p99 < 1s in every 2500ms window", 17, "slos[0]",
     "whole number"),
    ("  - latency p99 < 1s", "  - recovery_time after nope < 5s", 17, "slos[0]",
     "unknown phase 'nope'"),
    ("  - latency p99 < 1s", "  - goodput >= 90%", 17, "slos[0]", "needs `goodput:` rules"),
    # Scopes a metric has no value in: ended inconclusive, for a false reason.
    ("  - latency p99 < 1s", "  - isolation_ratio <= 1.5", 17, "slos[0]",
     "isolation_ratio cannot be judged per all: give it in a tenant's `slos`"),
    ("slo: error_rate < 1%", "slo: recovery_time < 30s", 18, "slos[1]",
     "recovery_time cannot be judged per scenario"),
    ("slo: error_rate < 1%", "slo: gpu.util mean < 90%", 18, "slos[1]", "per scenario"),
])
def test_slo_errors_name_the_slo_s_line_and_key(tmp_path: Path, old: str, new: str, line: int,
                                                key: str, said: str) -> None:
    """Not line 1 (`name:`), as a check across keys once read."""
    found, message = problems(tmp_path, SLOS.replace(old, new))
    assert (line, key) in found, message
    assert said in message


@pytest.mark.parametrize("value,said", [
    ('"four"', "Input should be a valid integer, unable to parse string as an integer"),
    ("-3", "must be > 0"),
    ("{dist: uniform, min: 50, max: 10}", "max must be >= min"),
])
def test_a_field_of_several_forms_says_what_is_wrong_with_the_one_given(
        tmp_path: Path, value: str, said: str) -> None:
    """`prompt_tokens` is a number or a distribution: an error names the key
    as written and speaks of the form given, not of pydantic's union members
    ("prompt_tokens.constrained-int", "tagged-union[...]") nor of the other
    form ("should be a valid dictionary" for a string; an audit)."""
    found, message = problems(tmp_path, BASE.replace(
        "    kind: openai-chat\n", f"    kind: openai-chat\n    prompt_tokens: {value}\n"))
    assert found == [(6, "scenarios[0].prompt_tokens")], message
    assert message.endswith(f"w.yaml:6: scenarios[0].prompt_tokens: {said}"), message


def test_a_duration_s_bound_is_said_in_seconds(tmp_path: Path) -> None:
    found, message = problems(tmp_path, BASE.replace("duration: 10s\n",
                                                     "duration: 10s\ninterval: 50ms\n"))
    assert found == [(3, "interval")] and message.endswith("interval: must be >= 0.1 s")


def test_a_prompt_set_that_cannot_be_read_points_at_its_key(tmp_path: Path) -> None:
    found, message = problems(tmp_path, BASE.replace(
        "    kind: openai-chat\n", "    kind: openai-chat\n    prompts: missing.jsonl\n"))
    assert found == [(6, "scenarios[0].prompts")], message
    assert "missing.jsonl: cannot read" in message


def test_a_phase_without_arrivals_is_pointed_at(tmp_path: Path) -> None:
    found, message = problems(tmp_path, "name: x\nphases:\n"
                              "  - {name: a, duration: 2s, arrival: {rate: 2}}\n"
                              "  - {name: b, duration: 2s}\n"
                              "scenarios: [{name: c, kind: openai-chat}]\n")
    assert found == [(4, "phases[1]")], message
    assert message.endswith("phase 'b' has no arrival process: give it an `arrival`, "
                            "or the workload one")


def test_unknown_scenario_reference_and_missing_arrival(tmp_path: Path) -> None:
    found, message = problems(tmp_path, BASE.replace("scenarios: [ping]", "scenarios: [pong]"))
    assert found == [(15, "tenants[1].scenarios")], message  # its line, not the top
    assert "unknown scenario 'pong'" in message
    _, message = problems(tmp_path, "duration: 1s\nscenarios: [{name: c, kind: http}]\n")
    assert "give `arrival` (one tenant), `tenants`" in message


def test_a_workload_that_sends_nothing_measured_is_refused(tmp_path: Path) -> None:
    """Silent (null) in every measured phase, whatever the warm-up sends:
    nothing would be measured, so nothing could be judged (exit 2, at load)."""
    silent = BASE.replace("arrival: {process: constant, rate: 5}",
                          "arrival: {process: constant, rate: 5}\n    phases: {measure: null}")
    silent = silent.replace("scenarios: [ping]", "scenarios: [ping]\n    phases: {measure: null}")
    _, message = problems(tmp_path, silent.replace("duration: 10s", "duration: 10s\nwarmup: 2s"))
    assert "every tenant is silent (null, or a rate of 0 all through) in every measured " \
        "phase (measure)" in message
    # one tenant sending in one measured phase is enough
    assert load(tmp_path, silent.replace("    phases: {measure: null}\n", "", 1)).workload


@pytest.mark.parametrize("arrival,said", [
    # steps of rate 0 only, as a ramp from 0 to 0 is refused
    ("{process: steps, steps: [{rate: 0, duration: 4s}, {rate: 0, duration: 4s}]}",
     "at least one step's rate must be > 0"),
    # spikes that start after the phase's end, over a base rate of 0
    ("{process: onoff, base_rate: 0, spike_rate: 9, spike_length: 1s, period: 2s, offset: 12s}",
     "every tenant is silent (null, or a rate of 0 all through)"),
])
def test_arrivals_that_never_send_are_refused(tmp_path: Path, arrival: str, said: str) -> None:
    text = BASE.split("tenants:")[0] + f"arrival: {arrival}\n"
    _, message = problems(tmp_path, text)
    assert said in message, message


def test_a_spike_inside_the_phase_over_a_base_of_0_sends() -> None:
    spikes = OnOff(process="onoff", base_rate=0, spike_rate=9, spike_length=1, period=2,
                   offset=8)
    assert spikes.mean_rate(10) == pytest.approx(0.9)  # one 1-s spike of 9/s, at 8 s of 10
    assert spikes.model_copy(update={"offset": 12}).mean_rate(10) == 0


@pytest.mark.parametrize("old,new,line,key", [
    ("rate: 15}", "rate: true}", 14, "tenants[1].arrival"),
    ("process: poisson, rate: 15}", "process: gamma, rate: 15, cv: yes}", 14,
     "tenants[1].arrival"),
    ("    kind: openai-chat\n", "    kind: openai-chat\n    max_tokens: on\n", 4, "scenarios[0]"),
    ("    kind: openai-chat\n", "    kind: openai-chat\n    weight: true\n", 4, "scenarios[0]"),
    ("{process: constant, rate: 5}", "{process: ramp, from: yes, to: 5}", 12,
     "tenants[0].arrival"),  # an alias
    ("{process: constant, rate: 5}", "{process: diurnal, rates: [1, true]}", 12,
     "tenants[0].arrival"),  # in a list
])
def test_true_and_false_are_not_numbers(tmp_path: Path, old: str, new: str, line: int,
                                       key: str) -> None:
    """pydantic reads YAML's true/yes/on as 1 where a number is due: a rate
    of 1/s, a cv of 1 (an audit). Refused, naming the key."""
    found, message = problems(tmp_path, BASE.replace(old, new))
    assert (line, key) in found, message
    assert "expected a number, not true/false" in message


def test_rate_refuses_a_file_whose_rate_is_true(tmp_path: Path) -> None:
    """--rate shares its total by the file's rates before they are checked:
    `rate: yes` would have been a share of 1."""
    with pytest.raises(InputError, match="true/false"):
        load(tmp_path, BASE.replace("rate: 15}", "rate: yes}"), overrides=Overrides(rate=30))


def test_not_a_mapping_and_bad_yaml(tmp_path: Path) -> None:
    _, message = problems(tmp_path, "- just\n- a list\n")
    assert "must be a YAML mapping" in message
    found, message = problems(tmp_path, "name: t\nduration: [1\n")
    assert found[0][0] == 3 and "invalid YAML" in message


def test_rate_override_keeps_tenant_shares(tmp_path: Path) -> None:
    w = load(tmp_path, BASE, overrides=Overrides(rate=40, duration=3, seed=5)).workload
    rates = []
    for t in w.tenants:
        assert isinstance(t.arrival, Constant | Poisson)
        rates.append(t.arrival.rate)
    assert rates == [10.0, 30.0]
    assert (w.duration, w.seed) == (3.0, 5)


def test_target_must_be_a_url(tmp_path: Path) -> None:
    _, message = problems(tmp_path, BASE + "target: localhost:8000\n")
    assert "target" in message and "http://" in message


@pytest.mark.parametrize("url", ["localhost:8000", "http://u:s3cr/QXZ@host:8000", "http://"])
def test_a_bad_target_flag_is_the_flag_s_fault_not_the_file_s(tmp_path: Path, url: str) -> None:
    with pytest.raises(InputError) as info:
        load(tmp_path, BASE, overrides=Overrides(target=url))
    message = str(info.value)
    assert info.value.exit_code == ExitCode.BAD_INPUT and not isinstance(info.value, WorkloadError)
    assert message.startswith("--target: must be an http:// or https:// URL"), message
    assert "w.yaml" not in message and "QXZ" not in message


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999",
                                 "http://127.0.0.1:0", "http://h:no-port",
                                 "http://u:s3cr/QXZ@host:8000", "http://:8000",
                                 "http://127.0.0.1 :8000"])
@pytest.mark.parametrize("key", ["target", "telemetry.agent", "telemetry.prometheus"])
def test_a_url_that_cannot_be_requested_is_bad_input(tmp_path: Path, url: str,
                                                     key: str) -> None:
    """Its host or port does not parse: exit 2 at load, never an internal
    error (exit 3) when the run first connects, nor a password's fragment in
    the message."""
    line = {"target": f"target: '{url}'",
            "telemetry.agent": f"telemetry: {{agent: '{url}'}}",
            "telemetry.prometheus": f"telemetry: {{prometheus: [{{url: '{url}'}}]}}"}[key]
    _, message = problems(tmp_path, BASE + line + "\n")
    assert key.split(".")[0] in message and "must be an http:// or https:// URL" in message
    assert "QXZ" not in message


def test_a_good_url_keeps_its_credentials_path_and_port(tmp_path: Path) -> None:
    w = load(tmp_path, BASE + "target: 'http://u:p%2Fw@[::1]:8000/v1/'\n").workload
    assert w.target == "http://u:p%2Fw@[::1]:8000/v1"


def test_simulator_settings_are_checked(tmp_path: Path) -> None:
    _, message = problems(tmp_path, BASE + "simulator: {itl: 5}\n")
    assert "simulator" in message and "itl" in message


def test_slo_lines_are_checked_where_they_are(tmp_path: Path) -> None:
    found, message = problems(tmp_path, BASE + "slos:\n  - latency p99 < 1s\n  - latency p99 < 3 furlongs\n")
    assert (18, "slos[1]") in found, message


@pytest.mark.parametrize("text,metric,stat,q,op,threshold,unit", [
    ("latency p99 < 500ms", "latency", "p99", 0.99, "<", 500.0, "ms"),
    ("ttft p50 <= 0.2s", "ttft", "p50", 0.5, "<=", 200.0, "ms"),
    ("itl p99.9 < 250us", "itl", "p99.9", 0.999, "<", 0.25, "ms"),
    ("tpot mean < 40 ms", "tpot", "mean", None, "<", 40.0, "ms"),
    ("error_rate < 1%", "error_rate", None, None, "<", 0.01, "%"),
    ("error_rate <= 0.05", "error_rate", None, None, "<=", 0.05, "%"),
    ("throughput >= 10 req/s", "throughput", None, None, ">=", 10.0, "req/s"),
])
def test_objective_grammar(text: str, metric: str, stat: str | None, q: float | None, op: str,
                           threshold: float, unit: str) -> None:
    o = parse_objective(text)
    assert (o.metric, o.stat, o.op, o.unit) == (metric, stat, op, unit)
    assert o.quantile == pytest.approx(q) if q else o.quantile is None
    assert o.threshold == pytest.approx(threshold)


@pytest.mark.parametrize("text,fragment", [
    ("latency < 5ms", "needs a statistic"),
    ("latancy p99 < 5ms", "unknown metric"),
    ("latency p100 < 5ms", "strictly between"),
    ("latency p99 < 5", "time unit"),
    ("error_rate p99 < 1%", "takes no statistic"),
    ("error_rate < 150%", "at most 100%"),
    ("latency p99 = 5ms", "cannot parse"),
    ("__import__('os') < 1ms", "cannot parse"),
])
def test_objective_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_objective(text)


def test_units() -> None:
    assert parse_duration("250ms") == 0.25 and parse_duration("5m") == 300.0
    assert parse_duration(2) == 2.0 and parse_duration("1h") == 3600.0
    assert parse_size("10MiB") == 10 * 2**20 and parse_size(512) == 512
    for bad in ("fast", True, "5 parsecs"):
        with pytest.raises(ValueError):
            parse_duration(bad)


@pytest.mark.parametrize("text,fragment", [
    ("duration: 1s\narrival: {process: gamma, rate: 5, cv: 1.0e-200}\n"
     "scenarios: [{name: c, kind: http}]\n", "arrival.cv"),
    ("duration: 1s\narrival: {process: constant, rate: 1.0e308}\n"
     "scenarios: [{name: c, kind: http}]\n", "arrival.rate"),
    ("duration: 1e12s\narrival: {rate: 1}\nscenarios: [{name: c, kind: http}]\n",
     "longer than 30 days"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: c, kind: http}]\nsimulator: {1: 2}\n",
     "simulator"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: c, kind: openai-chat, stream: true,"
     " checks: {json_path: [{path: id}]}}]\n", "stream: false"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: e, kind: openai-embeddings,"
     " checks: {regex: x}}]\n", "embeddings generate no text"),
    ("duration: 1s\narrival: {process: trace, path: t.csv, window: {start: 50, end: 20}}\n"
     "scenarios: [{name: c, kind: http}]\n", "window end must be after its start"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: c, kind: openai-chat,"
     " max_tokens: {dist: normal, mean: 10, std: 1, min: 20, max: 5}}]\n", "max must be >= min"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: c, kind: openai-completions,"
     " media: {images: {sizes: [64x64]}}}]\n", "not with openai-completions"),
    ("duration: 1s\narrival: {rate: 1}\nscenarios: [{name: c, kind: anthropic-messages,"
     " media: {audio: {seconds: 2s}}}]\n", "takes no audio"),
])
def test_hostile_values_are_bad_input(tmp_path: Path, text: str, fragment: str) -> None:
    _, message = problems(tmp_path, text)
    assert fragment in message, message


def test_env_references_are_checked_at_load_and_resolved_in_memory(tmp_path: Path) -> None:
    from loadkit import envrefs
    from loadkit.errors import InputError

    text = BASE.replace("    arrival: {process: constant, rate: 5}\n",
                        "    arrival: {process: constant, rate: 5}\n    api_key: ${B_KEY}\n"
                        "    headers: {X-Org: '${A_ORG}-${B_KEY}'}\n", 1)
    with pytest.raises(WorkloadError) as info:
        load(tmp_path, text, env={})
    # each where the file names it (not all under `headers:`), line and key
    assert info.value.problems == [
        (14, "tenants[0].headers.X-Org", "environment variable ${A_ORG} is not set"),
        (14, "tenants[0].headers.X-Org", "environment variable ${B_KEY} is not set"),
        (13, "tenants[0].api_key", "environment variable ${B_KEY} is not set")]
    w = load(tmp_path, text, env={"A_ORG": "acme", "B_KEY": "k"}).workload
    assert w.env_refs() == {"A_ORG", "B_KEY"} and w.tenants[0].api_key == "${B_KEY}"
    assert envrefs.resolve("${A_ORG}-${B_KEY}", {"A_ORG": "acme", "B_KEY": "k"}, "h") == "acme-k"
    with pytest.raises(InputError, match=r"^h: environment variable \$\{A_ORG\} is not set$"):
        envrefs.resolve("${B_KEY}${A_ORG}", {"B_KEY": "k"}, "h")
    assert envrefs.is_reference("${B_KEY}") and not envrefs.is_reference("x${B_KEY}")


def test_sharegpt_conversations_load_with_their_turns(tmp_path: Path) -> None:
    import json

    from loadkit.workload.prompt_set import PromptSetError, load_prompt_set
    convs = [{"conversations": [{"from": "system", "value": "be brief"},
                                {"from": "human", "value": "hi there"},
                                {"from": "gpt", "value": "hello to you"},
                                {"from": "human", "value": "and now"},
                                {"from": "gpt", "value": "ok"}]},
             {"conversations": [{"from": "gpt", "value": "no human here"}]}]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(convs))
    (p,) = load_prompt_set(path)  # the gpt-only conversation is skipped
    assert p.messages == [{"role": "system", "content": "be brief"},
                          {"role": "user", "content": "hi there"}]
    assert p.max_tokens == 3 and p.turns == (("and now", 1),) and p.length == 2
    path.write_text(json.dumps([{"conversations": "nope"}]))
    with pytest.raises(PromptSetError, match="conversations"):
        load_prompt_set(path)


def test_time_scale_scales_session_think_times() -> None:
    from loadkit.workload.models import Workload
    from loadkit.workload.scaling import time_scaled
    from loadkit.workload.scenarios import GenerationScenario, ThinkTime
    w = Workload.model_validate({
        "duration": "10s", "arrival": {"rate": 1},
        "scenarios": [{"name": "c", "kind": "openai-chat",
                       "session": {"turns": 3, "think_time": {"min": "2s", "max": "8s"}}},
                      {"name": "d", "kind": "openai-chat", "session": {"turns": 2,
                                                                        "think_time": "4s"}}]})
    scaled = time_scaled(w, 0.5)
    first, second = scaled.scenarios
    assert isinstance(first, GenerationScenario) and first.session is not None
    assert isinstance(first.session.think_time, ThinkTime)
    assert (first.session.think_time.min, first.session.think_time.max) == (1.0, 4.0)
    assert isinstance(second, GenerationScenario) and second.session is not None
    assert second.session.think_time == 2.0


def test_a_tenant_s_abandon_rule_needs_generation_scenarios_that_stream(tmp_path: Path) -> None:
    text = """
duration: 5s
scenarios:
  - {name: chat, kind: openai-chat, prompt_tokens: 8, max_tokens: 8, stream: STREAM}
tenants:
  - name: skimmers
    arrival: {process: constant, rate: 1}
    abandon: {read_tokens: 5}
"""
    w = load(tmp_path, text.replace("STREAM", "true")).workload
    assert w.tenants[0].abandon is not None and w.tenants[0].abandon.read_tokens == 5
    _, message = problems(tmp_path, text.replace("STREAM", "false"))
    assert "tenant 'skimmers': abandon.read_tokens and on_tool_call read a stream" in message
    found, message = problems(tmp_path, text.replace("kind: openai-chat", "kind: http").replace(
        ", prompt_tokens: 8, max_tokens: 8, stream: STREAM", ", path: /x"))
    assert "`abandon` applies to text generation" in message
    assert (8, "tenants[0].abandon") in found, message
    # Beside a chat, an HTTP scenario is no reason to refuse: the rule is the chat's.
    mixed = text.replace("STREAM", "true").replace(
        "tenants:", "  - {name: ping, kind: http, path: /x}\ntenants:")
    assert load(tmp_path, mixed).workload.tenants[0].abandon is not None
    # A KServe tensor inference streams nothing to read tokens from.
    _, message = problems(tmp_path, text.replace(
        "{name: chat, kind: openai-chat, prompt_tokens: 8, max_tokens: 8, stream: STREAM}",
        "{name: t, kind: kserve, model: m, tensors: [{name: X, datatype: FP32, shape: [1]}]}"))
    assert "needs stream: true and mode: generate" in message, message
