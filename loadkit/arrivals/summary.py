"""What a workload would send, without sending it (for `loadkit plan`)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from loadkit.arrivals.schedule import closed_loops, schedule
from loadkit.workload.models import Workload
from loadkit.workload.traces import TraceRow

BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class PlanSummary:
    total_s: float
    requests: Counter = field(default_factory=Counter)  # (phase, tenant)
    prompt_tokens: Counter = field(default_factory=Counter)
    output_tokens: Counter = field(default_factory=Counter)
    per_second: list[int] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)


def summarize(w: Workload, traces: Mapping[str, list[TraceRow]] | None = None) -> PlanSummary:
    phases = [p.name for p in w.phase_list]
    tenants = [t.name for t in w.all_tenants]
    total = sum(p.duration for p in w.phase_list)
    out = PlanSummary(total, per_second=[0] * max(1, math.ceil(total)))
    for slot in schedule(w, traces):
        key = (phases[slot.phase], tenants[slot.tenant])
        out.requests[key] += 1
        out.prompt_tokens[key] += slot.prompt_tokens or 0
        out.output_tokens[key] += slot.max_tokens or 0
        out.per_second[min(int(slot.at), len(out.per_second) - 1)] += 1
    for c in closed_loops(w):
        out.closed.append(f"{tenants[c.tenant]} in {phases[c.phase]}: closed loop, "
                          f"{c.spec.concurrency} users (request count depends on the server)")
    return out


def sparkline(counts: list[int], width: int = 80) -> str:
    """Per-second counts squeezed into `width` columns (each column's peak)."""
    if not counts:
        return ""
    step = max(1, math.ceil(len(counts) / width))
    peaks = [max(counts[i:i + step]) for i in range(0, len(counts), step)]
    top = max(peaks) or 1
    return "".join(BLOCKS[min(8, math.ceil(8 * c / top))] for c in peaks)
