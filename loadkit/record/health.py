"""The generator's own health: its CPU use and the host's CPU steal.

A load generator that is starved of CPU sends late and measures late; these
numbers (beside lateness) tell whether the run's tails can be trusted. They
describe the measurement, not the load, so they live with the recorder: the
probe is a recorder listener and its figures go into each interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


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
class HealthProbe:
    """The generator's CPU use and the host's steal since `start()`."""

    wall0: float
    cpu0: float
    steal0: tuple[int, int] | None

    @classmethod
    def start(cls) -> HealthProbe:
        return cls(time.monotonic(), time.process_time(), _steal_ticks())

    def finish(self) -> dict[str, float | None]:
        """{cpu_percent (one core = 100), steal_percent} since the start."""
        wall, cpu, steal = time.monotonic(), time.process_time(), _steal_ticks()
        steal_pct = None
        if self.steal0 and steal and steal[1] > self.steal0[1]:
            steal_pct = round(100.0 * (steal[0] - self.steal0[0])
                              / (steal[1] - self.steal0[1]), 2)
        cpu_pct = round(100.0 * (cpu - self.cpu0) / max(wall - self.wall0, 1e-9), 1)
        self.wall0, self.cpu0, self.steal0 = wall, cpu, steal
        return {"cpu_percent": cpu_pct, "steal_percent": steal_pct}

    def mark(self, interval: Any, *_: object) -> None:
        """As a recorder listener: each interval's own CPU and steal."""
        figures = self.finish()
        interval.cpu_percent, interval.steal_percent = (figures["cpu_percent"],
                                                        figures["steal_percent"])
