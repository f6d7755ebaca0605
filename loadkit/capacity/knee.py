"""The knee explained: between the highest passing probe and the lowest
failing one, which part of the mean request moved most by the server's own
timers (slo/why.py), the cause the failing probe named, and what a token
cost in energy and money on either side."""

from __future__ import annotations

from loadkit.capacity.model import Knee, ProbeRecord, Status

PARTS = ("queue", "prefill", "decode", "remainder")


def knee_of(records: list[ProbeRecord], passed: float | None,
            failed: float | None) -> Knee | None:
    """None unless a passing and a failing probe bound the capacity."""
    below = _at(records, passed, Status.PASS)
    above = _at(records, failed, Status.FAIL)
    if below is None or above is None:
        return None
    moved, part = None, None
    a, b = below.split, above.split
    if a is not None and b is not None:
        grown = {p: (x, y) for p in PARTS if (x := getattr(a, f"{p}_ms")) is not None
                 and (y := getattr(b, f"{p}_ms")) is not None}
        if grown:
            part = max(grown, key=lambda p: grown[p][1] - grown[p][0])
            x, y = grown[part]
            moved = f"{'outside the server' if part == 'remainder' else part} {x:,.1f} → {y:,.1f} ms"
    cause = above.causes[0] if above.causes else None
    return Knee(passed=below.value, failed=above.value, part=part, moved=moved,
                cause=cause.name if cause else None,
                cause_title=cause.title if cause else None,
                evidence=cause.evidence if cause else [],
                energy_per_1k_output_tokens_j=(below.energy_per_1k_output_tokens_j,
                                               above.energy_per_1k_output_tokens_j),
                cost_per_1m_output_tokens=(below.cost_per_1m_output_tokens,
                                           above.cost_per_1m_output_tokens))


def _at(records: list[ProbeRecord], value: float | None, status: Status) -> ProbeRecord | None:
    """The last probe of that status at that load (an extension decides)."""
    found = [r for r in records if r.status == status and value is not None
             and abs(r.value - value) <= 1e-9 * max(1.0, abs(value))]
    return found[-1] if found else None


def knee_line(k: Knee) -> str:
    said = [k.moved] if k.moved else []
    if k.cause_title:
        said.append(f"{k.cause_title}: {'; '.join(k.evidence)}")
    energy = k.energy_per_1k_output_tokens_j
    if None not in energy:
        said.append(f"energy per 1k output tokens {energy[0]:,.3g} → {energy[1]:,.3g} J")
    cost = k.cost_per_1m_output_tokens
    if None not in cost:
        said.append(f"cost per 1M output tokens {cost[0]:,.3g} → {cost[1]:,.3g}")
    return f"from {k.passed:.4g} to {k.failed:.4g}: " + ("; ".join(said) or "nothing moved "
                                                         "that the server times")
