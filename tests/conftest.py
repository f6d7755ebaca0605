"""Shared fixtures: real servers on loopback, workloads written to disk, runs."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
import yaml

from loadkit.cli import main
from loadkit.report import REPORTS
from loadkit.result import RunResult
from loadkit.run.execute import RunOptions, execute
from loadkit.workload.loader import load_workload

# The engines tier's fixtures (a real engine from PyPI; tests/engines/).
pytest_plugins = ["engine_support"]

HERE = Path(__file__).parent
ROOT = HERE.parent
RUN_SCHEMA = json.loads((ROOT / "docs" / "run.schema.json").read_text())
# Compiled once: jsonschema.validate() checks the 1,800-line schema against
# its metaschema on every call.
RUN_VALIDATOR = jsonschema.Draft202012Validator(RUN_SCHEMA)


@contextlib.contextmanager
def test_server(mode: str, *args: str):
    """Start tests/servers.py MODE in its own process; yield its base URL."""
    with serve_script("servers.py", mode, *args) as url:
        yield url


@contextlib.contextmanager
def serve_script(script: str, *args: str):
    """Start tests/SCRIPT in its own process; yield the base URL it prints
    (`LISTENING URL`) once bound."""
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"{script} did not start: {proc.stderr.read()}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def settled_gc():
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
def server():
    return test_server


@pytest.fixture
def workload_file(tmp_path):
    """Write a workload mapping (or text) to a YAML file and return its path."""
    def write(spec: dict | str, name: str = "w.yaml") -> Path:
        path = tmp_path / name
        path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False))
        return path
    return write


@pytest.fixture
def run(tmp_path, workload_file):
    """Run a workload in-process; return (run.json as loaded from disk, out dir).

    Without report.html unless asked (`html=True`): these tests read run.json,
    and the HTML's charts (~1 s a run) are tested by the report, browser and
    CLI tests. `probe=False` sets the workload's `client.probe: false`.
    Every run.json made here is checked against the generated schema and
    must round-trip through the model unchanged."""
    def go(spec: dict, probe: bool = True, **options) -> tuple[dict, Path]:
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


def cli(*args: str, env: dict | None = None, timeout: float = 120,
        process: bool = False) -> subprocess.CompletedProcess:
    """The command line as a user runs it, from the repository root: in this
    process (`main([...])`, its output captured, `env` as the whole
    environment), or with `process=True` through the real console entry in a
    child process (signals, the entry point itself)."""
    if process:
        return subprocess.run([sys.executable, "-m", "loadkit", *args], capture_output=True,
                              text=True, timeout=timeout, cwd=ROOT, env=env)
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["loadkit", *args], int(code), out.getvalue(),
                                       err.getvalue())


@pytest.fixture
def endless_server():
    """tests/endless_server.py in its own process (answers that never end:
    /endless streams tokens forever, /never sends its headers and nothing
    more); yields its base URL."""
    with serve_script("endless_server.py") as url:
        yield url
