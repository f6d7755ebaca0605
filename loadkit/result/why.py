"""run.json's `why`: what the run's latency was spent on, by the server's
own timers, and the causes named for a breached SLO (loadkit.slo.why)."""

from __future__ import annotations

from pydantic import Field

from loadkit.result.parts import Part


class Decomposition(Part):
    """Mean time of a completed request, split by the server's own timers:
    queue + prefill + decode is the server's end to end; the remainder is
    what lies outside it (network, gateway, proxies, the client)."""

    client_ms: float  # mean service time (end − sent) of the completed requests
    requests: int
    server_ms: float | None = None
    queue_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    remainder_ms: float | None = None  # client − server
    # The server's p99 of each part, the worst scrape's (not additive: p99s of
    # different requests; only as fine as the server's buckets: vLLM's first
    # ends at 0.3 s, and anything below it reads as an interpolation in it)
    tail_ms: dict[str, float] = Field(default_factory=dict)


class WhyPoint(Part):
    """One interval's decomposition (means), for the chart over time."""

    t_s: float
    client_ms: float
    queue_ms: float | None = None
    prefill_ms: float | None = None
    decode_ms: float | None = None
    remainder_ms: float | None = None


class Cause(Part):
    """A named cause of the tail, with the evidence that named it."""

    name: str  # generator | cold_start | kv_cache | queueing | batching | overhead | gpu_limits
    title: str
    evidence: list[str]
    share: float | None = None  # of the mean request time it accounts for, where it says


class Why(Part):
    decomposition: Decomposition | None = None  # None: the server exports no timers
    over_time: list[WhyPoint] = Field(default_factory=list)
    # Most likely first; empty when no SLO failed or was marginal, or nothing fired.
    causes: list[Cause] = Field(default_factory=list)
    # Server metrics that would let it decide, where they were missing.
    missing: list[str] = Field(default_factory=list)
