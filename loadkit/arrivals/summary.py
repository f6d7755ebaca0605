"""What a workload would send, without sending it (for `loadkit plan`)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from loadkit.arrivals.schedule import closed_loops, schedule
from loadkit.workload.models import Workload
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.scenarios import GenerationScenario
from loadkit.workload.traces import TraceRow

BLOCKS = " ▁▂▃▄▅▆▇█"


@dataclass
class PlanSummary:
    total_s: float
    requests: Counter = field(default_factory=Counter)  # (phase, tenant)
    # (phase, tenant): floats, as a prompt set's requests count at its mean
    prompt_tokens: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float))
    output_tokens: defaultdict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float))
    per_second: list[int] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    from_sets: list[str] = field(default_factory=list)  # scenarios counted at their set's mean
    # Later turns of drawn sessions (their times follow the answers): counted
    # in `requests`, not in `per_second` or the tokens.
    later_turns: int = 0


@dataclass(frozen=True)
class _SetMeans:
    """A prompt set's kept prompts, per request on average: words, and the
    output asked by the prompts' own `max_tokens` (the rest ask the slot's)."""

    words: float
    own_output: float
    share_without: float

    @classmethod
    def of(cls, prompts: list[Prompt]) -> _SetMeans:
        n = len(prompts)
        return cls(sum(p.length for p in prompts) / n,
                   sum(p.max_tokens or 0 for p in prompts) / n,
                   sum(not p.max_tokens for p in prompts) / n)


def summarize(w: Workload, traces: Mapping[str, list[TraceRow]] | None = None,
              prompt_sets: Mapping[str, list[Prompt]] | None = None) -> PlanSummary:
    """Token totals are the schedule's own draws, except for a scenario with a
    prompt set: the run draws its prompts at random as it sends (the probe's
    draws come first), so the plan counts each request at the set's mean."""
    phases = [p.name for p in w.phase_list]
    tenants = [t.name for t in w.all_tenants]
    total = sum(p.duration for p in w.phase_list)
    out = PlanSummary(total, per_second=[0] * max(1, math.ceil(total)))
    means: dict[int, _SetMeans] = {}
    for i, s in enumerate(w.scenarios):
        if not isinstance(s, GenerationScenario):
            continue
        prompts = (prompt_sets or {}).get(s.prompts or "")
        if prompts and (kept := s.kept_prompts(prompts)):  # none kept is refused at load
            means[i] = _SetMeans.of(kept)
            out.from_sets.append(s.name)
    for slot in schedule(w, traces):
        key = (phases[slot.phase], tenants[slot.tenant])
        out.requests[key] += 1
        if (m := means.get(slot.scenario)) is not None:
            out.prompt_tokens[key] += m.words
            out.output_tokens[key] += m.own_output + m.share_without * (slot.max_tokens or 0)
        else:
            out.prompt_tokens[key] += slot.prompt_tokens or 0
            out.output_tokens[key] += slot.max_tokens or 0
        out.per_second[min(int(slot.at), len(out.per_second) - 1)] += 1
        # A traced session's later turns are in its script, at their offsets
        # and with their counts; a drawn session's follow its answers.
        for offset, prompt, output in slot.script:
            out.requests[key] += 1
            out.prompt_tokens[key] += prompt or 0
            out.output_tokens[key] += output or 0
            out.per_second[min(int(slot.at + offset), len(out.per_second) - 1)] += 1
        if not slot.script and slot.turns > 1:
            out.requests[key] += slot.turns - 1
            out.later_turns += slot.turns - 1
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
