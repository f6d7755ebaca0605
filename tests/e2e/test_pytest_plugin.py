"""The pytest plugin, as a team uses it: installed through its `pytest11`
entry point, in a separate pytest process, against the embedded simulator."""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

WORKLOAD = """\
name: gate
duration: 2s
simulator: {preset: fast}
arrival: {rate: 30}
scenarios:
  - {name: chat, kind: openai-chat, stream: true, prompt_tokens: 20, max_tokens: 8}
slos: ["ttft p50 < 5s", "error_rate < 1%"]
"""


@pytest.mark.slow
def test_marker_and_fixture_gate_on_the_verdict(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", gate=WORKLOAD)
    pytester.makefile(".yaml", strict_slo='slos: ["ttft p50 < 1us"]\n')
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        # This shared 2-core machine is noisy: judge the SLOs, not the generator.
        @pytest.mark.loadkit("gate.yaml", allow_saturated=True)
        def test_passes(loadkit_result):
            assert loadkit_result["verdict"] == "pass"
            assert loadkit_result["counts"]["completed"] >= 50

        def test_fails_with_the_slo_table(loadkit_gate):
            loadkit_gate("gate.yaml", slo=["strict_slo.yaml"], duration="1s",
                         allow_saturated=True)

        def test_bad_workload_is_a_clear_failure(loadkit_gate):
            loadkit_gate("missing.yaml")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*loadkit gate failed (exit 1)*",
                                 "*ttft p50 < 1us*fail*",
                                 "*loadkit: *missing.yaml*"])
    assert "Traceback" not in result.stdout.str()
