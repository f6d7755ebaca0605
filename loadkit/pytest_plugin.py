"""pytest plugin (entry point `pytest11`): SLO gates beside a team's other tests.

    def test_chat_meets_its_slos(loadkit_gate):
        result = loadkit_gate("workloads/steady.yaml", duration="10s")
        assert result["throughput"]["requests_per_s"] > 5

    @pytest.mark.loadkit("workloads/steady.yaml", duration="10s", slo=["slo/chat.yaml"])
    def test_steady(loadkit_result):
        ...

A failing (or inconclusive, or untrusted) run fails the test with the SLO
table; its reports land in the test's tmp_path unless `out` is given. The
result is the run.json document (a dict, as saved). The gate changes no
process-wide state unless asked: `quiet_gc=True` freezes the heap and
collects rarely while the load runs (fewer collector pauses on the event
loop, so less lateness), as `loadkit run` does.
loadkit itself is imported only when a gate runs, so the plugin costs
nothing to test sessions that do not use it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "loadkit(workload, **options): run the workload before the test; its "
                   "run.json is the `loadkit_result` fixture; the test fails unless the "
                   "SLO verdict passes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked `loadkit` runs its gate whether or not it asks for the
    result (a marked test without the fixture passed without a run)."""
    for item in items:
        names = getattr(item, "fixturenames", None)
        if names is not None and item.get_closest_marker("loadkit") is not None \
                and "loadkit_result" not in names:
            names.append("loadkit_result")


@pytest.fixture
def loadkit_gate(tmp_path: Path) -> Callable[..., dict]:
    """gate(workload, duration=, slo=, target=, seed=, strict=, inconclusive=, out=,
    quiet_gc=) runs the workload and returns run.json; fails the test unless it passed."""
    def gate(workload: str | Path, *, duration: str | float | None = None,
             slo: list[str] | tuple[str, ...] = (), target: str | None = None,
             seed: int | None = None, strict: bool = False, inconclusive: str = "fail",
             allow_saturated: bool = False, out: str | Path | None = None,
             quiet_gc: bool = False) -> dict:
        from loadkit.errors import LoadkitError
        from loadkit.outputs.markdown import render_markdown
        from loadkit.run.execute import RunOptions, execute, exit_code
        from loadkit.workload.loader import Overrides, load_workload
        from loadkit.workload.units import parse_duration

        if isinstance(slo, (str, Path)):
            slo = [slo]
        if inconclusive not in ("fail", "pass"):
            pytest.fail(f"loadkit_gate: inconclusive must be 'fail' or 'pass', not "
                        f"{inconclusive!r}", pytrace=False)
        from loadkit.outputs.files import earlier_result

        if out and (held := earlier_result(Path(out))):
            pytest.fail(f"loadkit_gate: out={str(out)!r} already holds a result "
                        f"({', '.join(held)}): give another folder", pytrace=False)
        problem = None
        try:
            loaded = load_workload(workload, Overrides(
                duration=parse_duration(duration) if duration is not None else None,
                target=target, seed=seed, slo_files=tuple(str(s) for s in slo)))
            out_dir = Path(out) if out else tmp_path / "loadkit"
            result, out_dir = execute(loaded, RunOptions(out_dir=out_dir, strict=strict,
                                                         allow_saturated=allow_saturated,
                                                         quiet_gc=quiet_gc))
        except (LoadkitError, ValueError) as exc:
            problem = f"loadkit: {exc}"
        if problem:
            pytest.fail(problem, pytrace=False)
        code = exit_code(result, inconclusive)
        if code != 0:
            pytest.fail(f"loadkit gate failed (exit {int(code)}); reports in {out_dir}\n\n"
                        + render_markdown(result), pytrace=False)
        return result.model_dump(mode="json", by_alias=True)
    return gate


@pytest.fixture
def loadkit_result(request: pytest.FixtureRequest,
                   loadkit_gate: Callable[..., dict]) -> dict:
    """The run.json of the workload named by the test's `loadkit` marker."""
    marker = request.node.get_closest_marker("loadkit")
    if marker is None or not marker.args:
        pytest.fail("loadkit_result needs @pytest.mark.loadkit('workload.yaml', ...)",
                    pytrace=False)
    options = [n for n, p in inspect.signature(loadkit_gate).parameters.items()
               if p.kind is p.KEYWORD_ONLY]
    unknown = set(marker.kwargs) - set(options)
    if unknown or len(marker.args) != 1:
        pytest.fail(f"@pytest.mark.loadkit takes one workload and the options "
                    f"{', '.join(options)}"
                    + (f", not {', '.join(sorted(unknown))}" if unknown else ""), pytrace=False)
    return loadkit_gate(*marker.args, **marker.kwargs)
