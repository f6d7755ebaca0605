"""The command line as a user runs it, the test servers as processes, and the
generated run.json schema every run is checked against."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import jsonschema

from loadkit.cli import main

HERE = Path(__file__).parent.parent  # tests/
ROOT = HERE.parent
RUN_SCHEMA = json.loads((ROOT / "docs" / "run.schema.json").read_text())
# Compiled once: jsonschema.validate() checks the 1,800-line schema against
# its metaschema on every call.
RUN_VALIDATOR = jsonschema.Draft202012Validator(RUN_SCHEMA)


class StartServer(Protocol):
    """The `server` fixture (test_server): `with server("fast") as url:`."""

    def __call__(self, mode: str, *args: str) -> contextlib.AbstractContextManager[str]: ...


class WriteWorkload(Protocol):
    """The `workload_file` fixture: a workload mapping (or text) to a YAML file."""

    def __call__(self, spec: dict[str, Any] | str, name: str = "w.yaml") -> Path: ...


class RunWorkload(Protocol):
    """The `run` fixture: (run.json as loaded from disk, out dir)."""

    def __call__(self, spec: dict[str, Any], probe: bool = True,
                 **options: Any) -> tuple[dict[str, Any], Path]: ...


@contextlib.contextmanager
def test_server(mode: str, *args: str) -> Iterator[str]:
    """Start tests/servers.py MODE in its own process; yield its base URL."""
    with serve_script("servers.py", mode, *args) as url:
        yield url


@contextlib.contextmanager
def serve_script(script: str, *args: str) -> Iterator[str]:
    """Start tests/SCRIPT in its own process; yield the base URL it prints
    (`LISTENING URL`) once bound."""
    proc = subprocess.Popen([sys.executable, str(HERE / script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("LISTENING "):
            raise RuntimeError(f"{script} did not start: {proc.stderr.read()}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
        process: bool = False) -> subprocess.CompletedProcess[str]:
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
