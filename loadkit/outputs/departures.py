"""Clients that left, in words: how many by rule, and whether the server
stopped generating for them (run.json `counts.abandoned`, `reclaim`); one
list of lines for summary.md and report.html alike."""

from __future__ import annotations

from loadkit.result.model import RunResult


def departure_lines(result: RunResult) -> list[str]:
    """Nothing when no client left."""
    c, r = result.counts, result.reclaim
    if not c.abandoned:
        return []
    rules = ", ".join(f"{rule} {n:,}" for rule, n in sorted(c.abandoned.items()))
    lines = [f"{sum(c.abandoned.values()):,} clients left ({rules}), having read "
             f"{c.tokens_read:,} token events" + (f"; {c.retried:,} came back" if c.retried
                                                    else "")]
    if r is None:
        return lines
    if r.zombie_tokens is not None and r.generated is not None:
        lines.append(f"The server generated {r.zombie_tokens:,} tokens for nobody "
                     f"({r.per_abandoned:g} per departure, {(r.share or 0):.2%} of the "
                     f"{r.generated:,} it generated, by `{r.counter}`)")
    if r.abort_counter is not None:
        t = result.summary("reclaim_time")
        timed = (f"reclaim time p50 {t.p50:.4g} ms, p99 {t.p99:.4g} ms" if t and t.count
                 else "no reclaim time")
        # The server's counters span the whole run: warm-up departures too,
        # which the counts above (the measured phases') leave out.
        of = "them" if r.abandoned == sum(c.abandoned.values()) else \
            f"the {r.abandoned:,} that left over the whole run, warm-up included"
        lines.append(f"It aborted {r.reclaimed:,} of {of} ({timed}, by `{r.abort_counter}`); "
                     f"{r.unreclaimed:,} never aborted, {r.unobserved:,} too late to tell")
    lines += [f"Not measured: {m}" for m in r.missing]
    return lines
