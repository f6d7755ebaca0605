"""The console entry at its edges: a Ctrl-C while the command line is still
being imported, and a distributed run on an install without Locust. Each
ends with a message and its documented exit code, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from loadkit.errors import ExitCode
from support.run import ROOT

# Runs the console entry with Locust and gevent hidden, as after a plain
# `pip install .` (the dev extra installs them).
WITHOUT_LOCUST = (
    "import importlib.util as u, sys; f = u.find_spec; "
    "u.find_spec = lambda n, *a: None if n.split('.')[0] in ('locust', 'gevent') else f(n, *a); "
    "from loadkit.launch import entry; entry()")
# Runs it with a Ctrl-C landing while `loadkit.cli` is imported (a real
# signal cannot be timed to land there on every machine).
INTERRUPTED_IMPORT = (
    "import builtins; real = builtins.__import__\n"
    "def once(name, *a, **k):\n"
    "    if name == 'loadkit.cli':\n"
    "        raise KeyboardInterrupt\n"
    "    return real(name, *a, **k)\n"
    "builtins.__import__ = once\n"
    "from loadkit.launch import entry; entry()")


def entry(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_ctrl_c_while_the_command_line_imports_is_an_interrupt() -> None:
    proc = entry(INTERRUPTED_IMPORT, "--version")
    assert proc.returncode == ExitCode.UNTRUSTED, proc.stderr
    assert proc.stderr == "loadkit: interrupted\n"


def test_distributed_without_locust_names_the_extra(tmp_path: Path) -> None:
    spec = {"name": "d", "duration": "2s", "arrival": {"rate": 5},
            "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 4}]}
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(spec))
    for args in (["run", str(tmp_path / "w.yaml"), "--workers", "2", "-q",
                  "--out", str(tmp_path / "out")],
                 ["worker", "--master", "127.0.0.1:5557"]):
        proc = entry(WITHOUT_LOCUST, *args)
        assert proc.returncode == ExitCode.BAD_INPUT, (args, proc.stderr)
        assert "pip install 'loadkit[distributed]'" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was measured
