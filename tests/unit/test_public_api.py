"""The names loadkit promises to library callers; a change here is a release note."""

from __future__ import annotations

import subprocess
import sys

import loadkit

PUBLIC = ["ExitCode", "InputError", "LoadkitError", "Overrides", "RunError", "RunOptions",
          "RunResult", "Scope", "Verdict", "__version__", "execute", "exit_code",
          "load_run", "load_workload"]


def test_top_level_names_are_pinned_and_resolve() -> None:
    assert sorted(loadkit.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(loadkit, name) is not None, name


def test_importing_loadkit_loads_nothing_heavy() -> None:
    code = ("import sys, loadkit; "
            "print(sorted(m for m in ('matplotlib', 'aiohttp', 'loadkit.run.execute', 'numpy') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
