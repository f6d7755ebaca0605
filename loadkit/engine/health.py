"""The generator's own health: its CPU use and the host's CPU steal.

A load generator that is starved of CPU sends late and measures late; these
numbers (beside lateness) tell whether the run's tails can be trusted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


def _steal_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat; None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice:
    # guest time is already counted in user/nice, so leave it out of the total.
    steal = ticks[7] if len(ticks) > 7 else 0
    return steal, sum(ticks[:8])


@dataclass
class IntervalHealth:
    """Per-interval CPU and steal, as a recorder listener (marks each interval)."""

    wall: float
    cpu: float
    steal: tuple[int, int] | None

    @classmethod
    def start(cls) -> "IntervalHealth":
        return cls(time.monotonic(), time.process_time(), _steal_ticks())

    def mark(self, interval, *_: object) -> None:
        wall, cpu, steal = time.monotonic(), time.process_time(), _steal_ticks()
        if wall > self.wall:
            interval.cpu_percent = round(100.0 * (cpu - self.cpu) / (wall - self.wall), 1)
        if self.steal and steal and steal[1] > self.steal[1]:
            interval.steal_percent = round(
                100.0 * (steal[0] - self.steal[0]) / (steal[1] - self.steal[1]), 2)
        self.wall, self.cpu, self.steal = wall, cpu, steal


@dataclass
class HealthProbe:
    wall0: float
    cpu0: float
    steal0: tuple[int, int] | None

    @classmethod
    def start(cls) -> "HealthProbe":
        return cls(time.monotonic(), time.process_time(), _steal_ticks())

    def finish(self) -> dict[str, float | None]:
        wall = max(time.monotonic() - self.wall0, 1e-9)
        cpu = time.process_time() - self.cpu0
        steal1 = _steal_ticks()
        steal_pct = None
        if self.steal0 and steal1 and steal1[1] > self.steal0[1]:
            steal_pct = 100.0 * (steal1[0] - self.steal0[0]) / (steal1[1] - self.steal0[1])
        return {"cpu_percent": round(100.0 * cpu / wall, 1),
                "steal_percent": None if steal_pct is None else round(steal_pct, 2)}
