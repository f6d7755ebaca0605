"""What real engines send, served by the simulator's quirk faults, measured
by loadkit: every quirk of a whole answer is a success with exact token
counts and TTFT from the first token; an empty answer is a failure
(`incomplete`) whatever its HTTP status, and fails an error-rate gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest

from loadkit.cli import main
from loadkit.run.embedded_sim import embedded_simulator
from support.run import RunWorkload, WriteWorkload
from support.sim import parse_metrics

N, MAX_TOKENS, TTFT_MS = 120, 8, 40


def workload(faults: list[dict], target: str | None = None, slo: str | None = None) -> dict:
    spec: dict = {
        "name": "quirks", "duration": 2, "warmup": 0, "seed": 11,
        "arrival": {"process": "constant", "rate": N / 2},
        "scenarios": [{"name": "chat", "kind": "openai-chat", "stream": True,
                       "max_tokens": MAX_TOKENS, "prompt_tokens": 16}],
    }
    if target:
        spec["target"] = target
    else:
        spec["simulator"] = {"ttft_ms": TTFT_MS, "itl_ms": 2, "faults": faults}
    if slo:
        spec["slos"] = [slo]
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("fault", [
    {"kind": "no_done"},
    {"kind": "no_stream_usage"},
    {"kind": "merge_tokens", "tokens": 3},
    {"kind": "role_event"},
    {"kind": "ping_comments"},
])
def test_whole_answers_with_engine_quirks_are_measured_exactly(run: RunWorkload,
                                                               fault: dict) -> None:
    result, _ = run(workload([fault]), probe=False)
    tokens = result["tokens"]
    print(fault["kind"], result["counts"], tokens)
    assert result["counts"]["completed"] == N and result["counts"]["errors"] == 0
    assert tokens["output_total"] == N * MAX_TOKENS  # one token an event without usage
    assert tokens["finish_reason"] == {"length": N}
    assert tokens["no_done"] == (N if fault["kind"] == "no_done" else 0)
    ttft = result["series"]["ttft"]["all"]
    # TTFT is the first token's time (the simulator's ttft_ms), never the
    # role-only event's, which role_event sends before the prefill.
    assert TTFT_MS * 0.95 <= ttft["p50"] <= TTFT_MS * 1.5, ttft


@pytest.mark.slow
def test_cut_streams_are_incomplete_failures_and_fail_the_gate(
        workload_file: WriteWorkload, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """An engine that answers 200, a role-only event and [DONE] to a share s
    of requests: that share fails as `incomplete` (within 4 sigma), the
    error-rate SLO fails (exit 1), and loadkit's output tokens are exactly
    those the server sent (its own counter)."""
    share = 0.3
    with embedded_simulator({"ttft_ms": TTFT_MS, "itl_ms": 2,
                             "faults": [{"kind": "cut_stream", "rate": share}]}) as url:
        path = workload_file(workload([], target=str(url), slo="error_rate < 1%"))
        code = main(["run", str(path), "--no-probe", "-q", "--out", str(tmp_path / "out"),
                     "--allow-saturated"])  # the exit code of the SLO, on any host
        metrics = parse_metrics(httpx.get(url + "/metrics").text)
    sent = next(v for k, v in metrics.items() if k.startswith("vllm:generation_tokens_total"))
    result = json.loads((tmp_path / "out" / "run.json").read_text())
    failed = result["errors"]["by_kind"]["incomplete"]
    print(f"cut_stream: {failed} of {N} incomplete (expected {N * share:.0f}); "
          f"tokens {result['tokens']['output_total']} vs the server's {sent:.0f}")
    assert abs(failed - N * share) <= 4 * math.sqrt(N * share * (1 - share))
    assert result["counts"]["errors"] == failed and result["counts"]["completed"] == N - failed
    assert result["tokens"]["output_total"] == sent == (N - failed) * MAX_TOKENS
    assert "no answer token" in result["errors"]["examples"]["incomplete"][0]
    assert code == 1 and result["verdict"] == "fail"
    assert "incomplete" in capsys.readouterr().out


@pytest.mark.slow
def test_an_error_object_in_a_200_stream_is_a_protocol_failure(run: RunWorkload) -> None:
    result, _ = run(workload([{"kind": "error_in_stream", "rate": 0.5, "after_tokens": 3}]),
                    probe=False)
    failed = result["errors"]["by_kind"]["protocol"]
    assert abs(failed - N / 2) <= 4 * math.sqrt(N / 4), failed
    assert "error in stream" in result["errors"]["examples"]["protocol"][0]
    assert result["tokens"]["output_total"] == (N - failed) * MAX_TOKENS
