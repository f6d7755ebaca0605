"""Which scopes a measurement belongs to.

`all`, `tenant:<name>` and `scenario:<name>` cover the measured phases
(warm-ups excluded); `phase:<name>` covers one phase, warm-ups too.
"""

from __future__ import annotations

from collections.abc import Iterator

from loadkit.result.model import ALL, PhaseInfo, Scope


class Phases:
    """Which phases are measured, and how long each one is."""

    def __init__(self, phases: list[PhaseInfo]):
        """`phases` as they ran (result.model.as_ran cuts a run stopped early)."""
        self.start = {p.name: p.start_s for p in phases}
        self.duration = {p.name: p.duration_s for p in phases}
        self.measured = [p.name for p in phases if not p.warmup]
        self.measured_s = sum(self.duration[p] for p in self.measured)

    def scopes(self, phase: str, scenario: str, tenant: str) -> Iterator[Scope]:
        yield Scope.of("phase", phase)
        if phase in self.measured:
            yield from (ALL, Scope.of("tenant", tenant), Scope.of("scenario", scenario))

    def span(self, scope: Scope) -> tuple[float, float]:
        """(start, end) in seconds since the run's start that `scope` covers."""
        names = [scope.name] if scope.kind == "phase" else self.measured
        return (min(self.start[n] for n in names),
                max(self.start[n] + self.duration[n] for n in names))

    def seconds(self, scope: Scope) -> float:
        """The measured time a scope covers."""
        return self.duration.get(scope.name, 0.0) if scope.kind == "phase" else self.measured_s
