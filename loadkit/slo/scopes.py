"""Which scopes a measurement belongs to.

`all`, `tenant:<name>` and `scenario:<name>` cover the measured phases
(warm-ups excluded); `phase:<name>` covers one phase, warm-ups too.
"""

from __future__ import annotations

from collections.abc import Iterator


class Phases:
    """Which phases are measured, and how long each one is."""

    def __init__(self, phases: list[dict], ended_s: float | None = None):
        """`ended_s`: when the run actually ended, if it was cut short."""
        self.start = {p["name"]: p["start_s"] for p in phases}
        self.duration = {p["name"]: p["duration_s"] if ended_s is None else
                         max(0.0, min(p["duration_s"], ended_s - p["start_s"]))
                         for p in phases}
        self.measured = [p["name"] for p in phases if not p["warmup"]]
        self.measured_s = sum(self.duration[p] for p in self.measured)

    def scopes(self, phase: str, scenario: str, tenant: str) -> Iterator[str]:
        yield f"phase:{phase}"
        if phase in self.measured:
            yield from ("all", f"tenant:{tenant}", f"scenario:{scenario}")

    def span(self, scope: str) -> tuple[float, float]:
        """(start, end) in seconds since the run's start that `scope` covers."""
        names = [scope.removeprefix("phase:")] if scope.startswith("phase:") else self.measured
        return (min(self.start[n] for n in names),
                max(self.start[n] + self.duration[n] for n in names))
