"""The one error tree of loadkit, and the exit codes it maps to.

    LoadkitError                 exit 3 unless a subclass says otherwise
    ├── InputError               exit 2: bad workload, SLO file or flag
    │   └── WorkloadError        names the file, the line and the key path
    └── RunError                 exit 3: the run could not be done or trusted
        ├── TargetUnreachable    pre-flight found no live target
        ├── TargetRejected       the probe's requests were refused (401, 404, ...)
        └── SimulatorError       the embedded simulator did not start

Library exceptions (yaml, pydantic, aiohttp, httpx) are translated into these
at the boundary where they are caught, with a message that says what to do.
Failures of single requests during a run are *not* exceptions: they are
recorded with an :class:`ErrorKind`, because a load test measures them.
"""

from __future__ import annotations

import enum
import re


class ExitCode(enum.IntEnum):
    """The exit-code contract, documented in the README and tested."""

    PASSED = 0
    SLO_FAILED = 1
    BAD_INPUT = 2
    UNTRUSTED = 3


def gate(*, trusted: bool, failed: bool, undecided: bool, inconclusive: str) -> ExitCode:
    """The exit code of a gate (a run's SLOs, a comparison): untrusted numbers
    exit 3 whatever they say; a failure exits 1, and so does an undecided
    result unless `inconclusive` (the --inconclusive flag) is "pass"."""
    if inconclusive not in ("fail", "pass"):
        raise ValueError(f"inconclusive is 'fail' or 'pass', not {inconclusive!r}")
    if not trusted:
        return ExitCode.UNTRUSTED
    if failed or (undecided and inconclusive == "fail"):
        return ExitCode.SLO_FAILED
    return ExitCode.PASSED


class ErrorKind(enum.StrEnum):
    """Why one request failed; counted per kind, never as free text."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    RESET = "reset"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    PROTOCOL = "protocol"
    CHECK_FAILED = "check_failed"
    # A 2xx answer that is not a whole answer: a stream with no answer token,
    # or one that ended neither finished nor with [DONE] (engine.adapter).
    INCOMPLETE = "incomplete"
    # Still in flight when the run ended (the `client.drain` deadline after the
    # schedule, or a stop by an abort SLO or fail-fast), then cancelled: it
    # never answered, so it counts as a failure like the kinds above.
    UNFINISHED = "unfinished"


class LoadkitError(Exception):
    """Root of every error loadkit raises on purpose."""

    exit_code = ExitCode.UNTRUSTED


class InputError(LoadkitError):
    """The user gave us something we cannot use (file, flag, value)."""

    exit_code = ExitCode.BAD_INPUT


class WorkloadError(InputError):
    """A workload or SLO file is invalid; the message locates the problem."""

    def __init__(self, path: str, problems: list[tuple[int | None, str, str]]):
        self.path = path
        self.problems = problems  # (line, key path, message)
        lines = []
        for line, key, msg in problems:
            where = f"{path}:{line}" if line else path
            lines.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
        super().__init__("\n".join(lines))


class RunError(LoadkitError):
    """The run could not be carried out or its numbers cannot be trusted."""

    exit_code = ExitCode.UNTRUSTED


class TargetUnreachable(RunError):
    """Pre-flight could not reach the target."""


class TargetRejected(RunError):
    """The target refused the probe requests sent before the clock started."""


class SimulatorError(RunError):
    """The embedded simulator failed to start."""


class AnswerTooLarge(LoadkitError):
    """An answer loadkit reads whole (a telemetry scrape) grew past its limit:
    reading stopped there."""

    def __init__(self, limit: int, declared: int | None = None):
        self.limit = limit
        size = f"{declared:,} bytes" if declared is not None else f"more than {limit >> 20} MiB"
        super().__init__(f"answered {size}; loadkit reads at most {limit >> 20} MiB of it, "
                         "and read no further")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """A server's words as they may be shown: each control character (an
    escape sequence that would drive a terminal, a NUL that no XML file may
    hold) written as `\\xNN`; tab and newline stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
