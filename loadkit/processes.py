"""The child processes loadkit starts (the embedded simulator, the live
report, a distributed run's Locust relays and workers): how they end."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess

__all__ = ["die_with_parent", "stop"]


def stop(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def die_with_parent() -> None:
    """As a Popen `preexec_fn` on Linux: SIGTERM the child if loadkit dies
    without cleaning up (SIGKILL, the OOM killer), so no orphan keeps running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
