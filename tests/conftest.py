"""Shared fixtures: real servers on loopback, workloads written to disk, runs."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadkit.outputs import REPORTS
from loadkit.result import RunResult
from loadkit.run.execute import RunOptions, execute
from loadkit.workload.loader import load_workload
from support.run import (
    RUN_VALIDATOR,
    RunWorkload,
    StartServer,
    WriteWorkload,
    serve_script,
    test_server,
)

# The engines tier's fixtures (a real engine from PyPI; tests/engines/).
pytest_plugins = ["support.engines"]


@pytest.fixture
def settled_gc() -> Iterator[None]:
    """For a test that times code in this process outside a run (a run settles
    the collector itself: loadkit.engine.loop.quiet_collector). The suite's heap is
    large and long-lived (matplotlib, playwright, module fixtures): collect it
    and freeze what survives, so that no full collection of it lands inside the
    measurement; unfreeze afterwards, so that later tests can free it."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


@pytest.fixture
def server() -> StartServer:
    return test_server


@pytest.fixture
def workload_file(tmp_path: Path) -> WriteWorkload:
    """Write a workload mapping (or text) to a YAML file and return its path."""
    def write(spec: dict[str, Any] | str, name: str = "w.yaml") -> Path:
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path
    return write


@pytest.fixture
def run(tmp_path: Path, workload_file: WriteWorkload) -> RunWorkload:
    """Run a workload in-process; return (run.json as loaded from disk, out dir).

    Without report.html unless asked (`html=True`): these tests read run.json,
    and the HTML's charts (~1 s a run) are tested by the report, browser and
    CLI tests. `probe=False` sets the workload's `client.probe: false`.
    Every run.json made here is checked against the generated schema and
    must round-trip through the model unchanged."""
    def go(spec: dict[str, Any], probe: bool = True,
           **options: Any) -> tuple[dict[str, Any], Path]:
        if not probe:
            spec = {**spec, "client": {**spec.get("client", {}), "probe": False}}
        path = workload_file(spec)
        out = tmp_path / f"out-{time.monotonic_ns()}"
        html = options.pop("html", False)
        options["reports"] = REPORTS if html else REPORTS - {"html"}
        execute(load_workload(path), RunOptions(out_dir=out, **options))
        text = (out / "run.json").read_text()
        document = json.loads(text)
        RUN_VALIDATOR.validate(document)
        assert RunResult.from_json(text).to_json() == text
        return document, out
    return go


@pytest.fixture
def endless_server() -> Iterator[str]:
    """tests/endless_server.py in its own process (answers that never end:
    /endless streams tokens forever, /never sends its headers and nothing
    more); yields its base URL."""
    with serve_script("endless_server.py") as url:
        yield url
