"""loadkit: load testing and SLO verification for GPU inference endpoints.

The library entry points, for callers that are not the CLI:

    from loadkit import Overrides, RunOptions, execute, load_workload, exit_code
    result, out_dir = execute(load_workload("workloads/steady.yaml"), RunOptions())
    result.verdict, exit_code(result)            # a RunResult (run.json, typed)
    load_run(out_dir)                            # the same, read back

Names resolve on first use, so `import loadkit` (and the embedded simulator,
which lives in this package) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "execute": "loadkit.run.execute", "RunOptions": "loadkit.run.execute",
    "exit_code": "loadkit.run.execute",
    "load_workload": "loadkit.workload.loader", "Overrides": "loadkit.workload.loader",
    "RunResult": "loadkit.result", "Verdict": "loadkit.result", "Scope": "loadkit.result",
    "load_run": "loadkit.result",
    "ExitCode": "loadkit.errors", "LoadkitError": "loadkit.errors",
    "InputError": "loadkit.errors", "RunError": "loadkit.errors",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loadkit' has no attribute {name!r}")
