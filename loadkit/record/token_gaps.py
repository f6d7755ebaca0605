"""One stream's gaps between token events as per-token samples.

A server may send several tokens in one event (a stream interval, speculative
decoding), so a gap between events is not one inter-token latency: an event
of k tokens after a gap g gives k samples of g / k. Where the tokens in each
event are not said, the mean after the first event stands in. The recorder
hands its own `value` (metric, request, nanoseconds, count) so that samples
go straight into its histograms, with nothing built per gap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loadkit.record.recorder import RequestRecord

Value = Callable[[str, "RequestRecord", int, int], None]  # metric, request, ns, count
ONE_TOKEN = "_one_token_gap"  # internal: split into itl and inter_chunk at rotation


def token_gaps(value: Value, r: RequestRecord, gaps: list[int]) -> str:
    """Record `inter_chunk`, every gap between events, and `itl`, per token;
    return how the tokens per event were known (the `itl_sources` key).
    Where each event holds one token the two are the same samples, recorded
    once (ONE_TOKEN) and added to both at rotation: a stream's hot path
    records each gap once."""
    per, n, events = r.event_tokens, r.output_tokens or 0, len(gaps) + 1
    if per is not None and len(per) == events and any(k > 1 for k in per):
        how = r.event_source
        for gap, k in zip(gaps, per[1:]):
            value("itl", r, gap // k, k)
    elif per is None and n > events:
        how = "estimated"  # k = the mean tokens per event after the first
        rest = n - first_tokens(r, n, events)
        mean = rest / len(gaps)
        # Whole weights that add up to the tokens after the first: one
        # sample per token, each the gap over the mean.
        base, extra = divmod(rest, len(gaps))
        for i, gap in enumerate(gaps):
            value("itl", r, int(gap / mean), base + (i < extra))
    else:
        for gap in gaps:
            value(ONE_TOKEN, r, gap, 1)
        return r.event_source if per is not None else "one"
    for gap in gaps:
        value("inter_chunk", r, gap, 1)
    return how


def phase_gaps(value: Value, r: RequestRecord, gaps: list[int], k: int) -> None:
    """A stream that reasoned first (its answer starts at event k): ITL per
    token of each phase apart, `reasoning_itl` between reasoning events and
    `answer_itl` into each answer event (the first's gap is from the last
    reasoning token). Tokens per event as `itl` counts them: said, else the
    mean, else one."""
    n, events = r.output_tokens or 0, len(gaps) + 1
    per: list[float] | list[int] | None = r.event_tokens
    if per is None or len(per) != events:
        per = [1.0] + [(n - first_tokens(r, n, events)) / len(gaps) if n > events
                       else 1.0] * len(gaps)
    for metric, lo, hi in (("reasoning_itl", 0, k - 1), ("answer_itl", k - 1, len(gaps))):
        for gap, tokens in zip(gaps[lo:hi], per[lo + 1:hi + 1]):
            value(metric, r, int(gap / tokens), max(1, round(tokens)))


def first_tokens(r: RequestRecord, n: int, events: int) -> int:
    """The tokens of a stream's first event where only its total n is known:
    its share of the output text (a server that sends 4 tokens an event
    sends 4 in the first too; vLLM's stream interval sends the first alone),
    leaving at least one for each later event; 1 where the text was not seen."""
    if r.first_share is None:
        return 1
    return max(1, min(round(n * r.first_share), n - (events - 1)))
