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


def test_a_marked_test_runs_its_gate_and_an_earlier_result_is_kept(
        pytester: pytest.Pytester) -> None:
    """The marker runs the gate without the fixture (it once passed with no
    run at all); unknown marker options, and an `out` that holds an earlier
    run, fail the test with a message (a TypeError; the earlier run
    overwritten, as `loadkit run --out` refuses to)."""
    pytester.makefile(".yaml", gate=WORKLOAD)
    (pytester.path / "earlier").mkdir()
    (pytester.path / "earlier" / "run.json").write_text("{}")
    pytester.makepyfile(textwrap.dedent("""
        import pytest

        @pytest.mark.loadkit("missing.yaml")
        def test_marked_without_the_fixture():
            pass

        @pytest.mark.loadkit("gate.yaml", rate=5)
        def test_an_unknown_option(loadkit_result):
            pass

        def test_an_earlier_result(loadkit_gate):
            loadkit_gate("gate.yaml", out="earlier")
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=2, failed=1)
    result.stdout.fnmatch_lines(["*loadkit: *missing.yaml*",
                                 "*@pytest.mark.loadkit takes one workload and the options*"
                                 "not rate*",
                                 "*out='earlier' already holds a result (run.json)*"])
    assert (pytester.path / "earlier" / "run.json").read_text() == "{}"
    assert "Traceback" not in result.stdout.str()
