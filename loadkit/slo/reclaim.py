"""Does the server stop generating for a client that left?

A server or proxy that keeps decoding after a disconnect burns GPU time on
answers nobody reads ("zombie" generations). From the server's own count of
generated tokens (vLLM's `vllm:generation_tokens_total`, SGLang's, or the
sum of TGI's `tgi_request_generated_tokens` histogram), scraped before the
first request and after the last: the tokens it generated beyond those its
clients received (completed answers' output tokens, and the token events
that reached abandoned streams before they left, read or not). Where the
server exports no such count the figures are absent, and SLOs on them
inconclusive. Tokens a failed stream received count as zombies (they are
rare and small), and generation still going on at the last scrape is not
seen.

How soon it stops: each departure's `reclaim_time`, from the client's close
to the scrape of the server's aborted-request counter that first counted it
(record/reclaim_clock.py; at most one scrape interval late). Whatever could
not be measured is said in `missing`, and SLOs on it are inconclusive.
"""

from __future__ import annotations

from loadkit.record.reclaim_clock import ReclaimClock
from loadkit.result.model import Reclaim, SLOResult, Telemetry

# The server's generated tokens: cumulative counters (last scrape - first), or
# a histogram's per-scrape sums (TGI's tokens per request: added up).
COUNTERS = ("vllm:generation_tokens_total", "sglang:generation_tokens_total")
SUMS = ("tgi_request_generated_tokens.sum",)


def reclaim(telemetry: Telemetry | None, received: int, abandoned: int,
            clock: ReclaimClock | None = None) -> Reclaim | None:
    """`received`: tokens the clients read, every phase; `abandoned`: the
    requests whose client left, every phase; `clock`: the departures matched
    with the server's aborts (record/reclaim_clock.py). None: no client left."""
    if not abandoned:
        return None
    figures: dict[str, object] = {}
    missing = []
    series = telemetry.series.values() if telemetry is not None else ()
    for name in (*COUNTERS, *SUMS):
        # Named as scraped, after any source's prefix (`sim.`, `host:port.`).
        found = [s.points for s in series if s.metric == name or s.metric.endswith("." + name)]
        found = [pts for pts in found if len(pts) > 1 or name in SUMS and pts]
        if found:
            generated = sum(pts[-1][1] - pts[0][1] if name in COUNTERS
                            else sum(v for _, v in pts) for pts in found)
            left = max(generated - received, 0.0)
            figures.update(counter=name, generated=round(generated), zombie_tokens=round(left),
                           per_abandoned=round(left / abandoned, 3),
                           share=round(left / generated, 6) if generated > 0 else 0.0)
            break
    else:
        missing.append("zombie tokens: the server exports no generated-token counter "
                       f"({', '.join((*COUNTERS, *SUMS))}) on a scraped /metrics")
    if clock is None or clock.counter is None:
        missing.append(f"reclaim time: {clock.unmeasured if clock else 'not measured'}")
    else:
        figures.update(abort_counter=clock.counter, reclaimed=clock.reclaimed,
                       unreclaimed=clock.unreclaimed, unobserved=clock.unobserved)
    return Reclaim(abandoned=abandoned, received=received, missing=missing, **figures)


def slo_figures(r: Reclaim | None) -> dict[str, float]:
    """`zombie_tokens` (per abandoned request) and `zombie_share` (% of all
    generated tokens) for the SLOs."""
    if r is None or r.per_abandoned is None or r.share is None:
        return {}
    return {"zombie_tokens": r.per_abandoned, "zombie_share": r.share * 100.0}


def explain_missing(results: list[SLOResult], r: Reclaim | None) -> list[SLOResult]:
    """A `reclaim_time` SLO without samples says why there are none."""
    def why(s: SLOResult) -> SLOResult:
        if s.metric != "reclaim_time" or s.samples:
            return s
        reason = ("no client left" if r is None else
                  next((m for m in r.missing if m.startswith("reclaim")), s.reason))
        return s.model_copy(update={"reason": reason})
    return [why(s) for s in results]
