"""Start the embedded simulator as a separate process on an ephemeral port.

A separate process keeps the simulator's CPU off the generator's event loop,
so it cannot distort the measurement. It is stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

from loadkit.errors import SimulatorError

READY = "LOADKIT_SIM_LISTENING "


def sim_args(config: dict) -> list[str]:
    """SimConfig fields (validated with the workload) as the simulator's flags."""
    return [arg for key, value in config.items()
            for arg in ("--" + key.replace("_", "-"), str(value))]


@contextlib.contextmanager
def embedded_simulator(config: dict, startup_timeout: float = 20.0) -> Iterator[str]:
    """Yield the simulator's base URL while it runs."""
    cmd = [sys.executable, "-m", "loadkit.sim", "--host", "127.0.0.1", "--port", "0",
           *sim_args(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield _wait_ready(proc, startup_timeout)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY):
                return line[len(READY):].strip()
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
    raise SimulatorError(f"the embedded simulator did not start: {err.strip()[-500:] or 'timeout'}")
