"""The finish_reason mix of a run: how many answers ended each way, and
whether that mix shifted between the first and second half of the measured
intervals (answers cut short by `length`, or `stop`ping early, as a release
changes). Pure: RunResult in, rows out, for the HTML and Markdown reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from loadkit.result.model import RunResult

SHIFT = 0.05  # a reason's share moving this much between halves is called a shift


@dataclass(frozen=True)
class FinishRow:
    reason: str
    count: int
    share: float  # of every completed request with a finish_reason
    first_half: float | None  # its share in the first half of the intervals
    second_half: float | None

    @property
    def shifted(self) -> bool:
        return (self.first_half is not None and self.second_half is not None
                and abs(self.second_half - self.first_half) >= SHIFT)


def finish_mix(r: RunResult) -> list[FinishRow]:
    """One row a reason, commonest first; empty when no answer said one."""
    total = sum(r.tokens.finish_reason.values())
    if not total:
        return []
    ivs = [iv for iv in r.timeseries if iv.finish_reasons]
    half = len(ivs) // 2
    early = sum((Counter(iv.finish_reasons) for iv in ivs[:half]), Counter())
    late = sum((Counter(iv.finish_reasons) for iv in ivs[half:]), Counter())
    n_early, n_late = sum(early.values()), sum(late.values())
    return [FinishRow(reason, n, n / total,
                      early[reason] / n_early if half and n_early else None,
                      late[reason] / n_late if half and n_late else None)
            for reason, n in sorted(r.tokens.finish_reason.items(), key=lambda kv: -kv[1])]


def finish_notes(r: RunResult) -> list[str]:
    """Sentences for the reports: the mix, a shift in it, streams without [DONE]."""
    rows = finish_mix(r)
    notes = []
    if rows:
        notes.append("Answers ended by finish_reason: " + ", ".join(
            f"{row.reason} {row.count:,} ({row.share:.1%})" for row in rows) + ".")
    for row in rows:
        if row.shifted:
            notes.append(f"The share of `{row.reason}` moved from {row.first_half:.1%} in the "
                         f"first half of the run to {row.second_half:.1%} in the second.")
    if r.tokens.no_done:
        notes.append(f"{r.tokens.no_done:,} streams ended after their finish_reason without "
                     "`data: [DONE]` (complete; some engines never send it).")
    return notes
