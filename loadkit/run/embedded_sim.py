"""Start the embedded simulator (loadkit.sim) as a separate process on an
ephemeral port. It lives here, not in sim/, which imports nothing of loadkit.

A separate process keeps the simulator's CPU off the generator's event loop,
so it cannot distort the measurement. It is stopped when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import IO

from loadkit.errors import SimulatorError
from loadkit.processes import die_with_parent, stop

READY = "LOADKIT_SIM_LISTENING "
GRPC = "LOADKIT_SIM_GRPC "


class SimAddress(str):
    """The simulator's base URL, and its KServe v2 gRPC host:port (`grpc`)
    when it was asked for one (None otherwise)."""

    grpc: str | None = None


def sim_args(config: dict) -> list[str]:
    """SimConfig fields (validated with the workload) as the simulator's flags."""
    return [arg for key, value in config.items()
            for arg in ("--" + key.replace("_", "-"),
                        json.dumps(value) if isinstance(value, (list, dict)) else str(value))]


@contextlib.contextmanager
def embedded_simulator(config: dict, startup_timeout: float = 20.0,
                       grpc: bool = False) -> Iterator[SimAddress]:
    """Yield the simulator's base URL while it runs (with a gRPC port: `grpc`)."""
    cmd = [sys.executable, "-m", "loadkit.sim", "--host", "127.0.0.1", "--port", "0",
           *(["--grpc-port", "0"] if grpc else []), *sim_args(config)]
    # Its own session: a Ctrl-C at the terminal stops loadkit's schedule, and
    # loadkit then stops the simulator, after the in-flight answers are in.
    # stderr goes to a file, not a pipe: a pipe nobody reads fills up and
    # would freeze the simulator mid-run.
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                start_new_session=True,
                                preexec_fn=die_with_parent)
        try:
            yield _wait_ready(proc, startup_timeout, errors)
        finally:
            stop(proc)


def _wait_ready(proc: subprocess.Popen, timeout: float, errors: IO[str]) -> SimAddress:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    grpc = None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(GRPC):  # the HTTP line follows at once, maybe in this buffer
                grpc = line[len(GRPC):].strip()
                line = proc.stdout.readline()
            if line.startswith(READY):
                address = SimAddress(line[len(READY):].strip())
                address.grpc = grpc
                return address
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    errors.seek(0)
    err = errors.read()
    raise SimulatorError(f"the embedded simulator did not start: {err.strip()[-500:] or 'timeout'}")
