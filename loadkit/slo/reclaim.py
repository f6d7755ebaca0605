"""Does the server stop generating for a client that left?

A server or proxy that keeps decoding after a disconnect burns GPU time on
answers nobody reads ("zombie" generations). From the server's own
generated-token counter (vLLM's `vllm:generation_tokens_total`, SGLang's,
TGI's), scraped before the first request and after the last: the tokens it
generated beyond those its clients received (completed answers' output
tokens, and the token events that reached abandoned streams before they
left, read or not). Where
the server exports no such counter the figures are absent, and SLOs on them
inconclusive. Tokens a failed stream received count as zombies (they are
rare and small), and generation still going on at the last scrape is not
seen.
"""

from __future__ import annotations

from loadkit.result.model import Reclaim, Telemetry

COUNTERS = ("vllm:generation_tokens_total", "sglang:generation_tokens_total",
            "tgi_request_generated_tokens_sum")


def reclaim(telemetry: Telemetry | None, received: int, abandoned: int) -> Reclaim | None:
    """`received`: tokens the clients read, every phase; `abandoned`: the
    requests whose client left, every phase. None: no counter, or no client left."""
    if telemetry is None or not abandoned:
        return None
    for name in COUNTERS:
        found = [s.points for s in telemetry.series.values()
                 if s.metric.removeprefix("prom.") == name and len(s.points) > 1]
        if found:
            generated = sum(pts[-1][1] - pts[0][1] for pts in found)
            zombie = max(generated - received, 0.0)
            return Reclaim(counter=name, generated=round(generated), received=received,
                           zombie_tokens=round(zombie), abandoned=abandoned,
                           per_abandoned=round(zombie / abandoned, 3),
                           share=round(zombie / generated, 6) if generated > 0 else 0.0)
    return None


def slo_figures(r: Reclaim | None) -> dict[str, float]:
    """`zombie_tokens` (per abandoned request) and `zombie_share` (% of all
    generated tokens) for the SLOs."""
    if r is None:
        return {}
    return {"zombie_tokens": r.per_abandoned, "zombie_share": r.share * 100.0}
