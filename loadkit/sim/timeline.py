"""Simulated GPU time: when work finishes, given stalls and slow degradation.

Pure arithmetic on loop-clock seconds, so it can be checked with plain
numbers.  A *stall* freezes a replica: work in progress makes no progress
during the freeze and resumes where it was afterwards (a token due inside a
freeze arrives ``duration`` late; the ones after it keep their spacing, they
do not burst to catch up).  *Degradation* multiplies step times by
``(1 + p/100) ** minutes_since_start`` while active.  A *ramp* adds
``ms_per_s x seconds_since_start`` milliseconds to a request's time to first
token (``delay``): a linear slow-down of known slope.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .faults import Fault

_INF = math.inf


class Timeline:
    """Stall windows and degradation factors of one server run."""

    __slots__ = ("_degrades", "_ramps", "_stalls", "origin", "trivial")

    def __init__(self, faults: Iterable[Fault], origin: float) -> None:
        self.origin = origin  # loop time at which fault schedules start (t = 0)
        faults = tuple(faults)
        self._stalls = tuple(f for f in faults if f.kind == "stall")
        self._degrades = tuple(f for f in faults if f.kind == "degrade")
        self._ramps = tuple(f for f in faults if f.kind == "ramp")
        # The hot path skips this module entirely when nothing applies.
        self.trivial = not self._stalls and not self._degrades and not self._ramps

    def speed_factor(self, replica: int, t: float) -> float:
        """Multiplier on step times at loop time ``t`` (1.0 when healthy)."""
        factor = 1.0
        rel = t - self.origin
        for f in self._degrades:
            if (f.replica is None or f.replica == replica) and f.active(rel):
                factor *= (1.0 + f.percent_per_minute / 100.0) ** ((rel - f.start) / 60.0)
        return factor

    def delay(self, replica: int, t: float) -> float:
        """Seconds added to the prefill of a request started at loop time ``t``
        by the active ramps (0.0 when none applies)."""
        extra = 0.0
        rel = t - self.origin
        for f in self._ramps:
            if (f.replica is None or f.replica == replica) and f.active(rel):
                extra += f.ms_per_s / 1000.0 * (rel - f.start)
        return extra

    def advance(self, replica: int, t: float, work: float) -> float:
        """Loop time at which ``work`` seconds of GPU time started at ``t`` end."""
        if not self._stalls:
            return t + work
        rel = t - self.origin
        while True:
            rel = self._thaw(replica, rel)
            nxt = self._next_freeze(replica, rel)
            if rel + work <= nxt:
                return self.origin + rel + work
            work -= nxt - rel
            rel = nxt

    def frozen_until(self, replica: int, t: float) -> float | None:
        """End (loop time) of the freeze ``t`` falls in, or None."""
        rel = t - self.origin
        end = self._thaw(replica, rel)
        return self.origin + end if end > rel else None

    # -- private helpers ----------------------------------------------------------

    def _thaw(self, replica: int, rel: float) -> float:
        """First instant at or after ``rel`` outside every freeze."""
        moved = True
        while moved:  # freezes of different faults may chain
            moved = False
            for f in self._stalls:
                if (f.replica is not None and f.replica != replica) or not f.active(rel):
                    continue
                a = f.start + math.floor((rel - f.start) / f.every) * f.every
                b = a + f.duration if f.end is None else min(a + f.duration, f.end)
                if rel < b:
                    rel, moved = b, True
        return rel

    def _next_freeze(self, replica: int, rel: float) -> float:
        """Start of the first freeze strictly after ``rel`` (inf if none)."""
        best = _INF
        for f in self._stalls:
            if f.replica is not None and f.replica != replica:
                continue
            if rel < f.start:
                a = f.start
            else:
                a = f.start + (math.floor((rel - f.start) / f.every) + 1) * f.every
            if (f.end is None or a < f.end) and a < best:
                best = a
        return best
