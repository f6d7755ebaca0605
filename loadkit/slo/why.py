"""Why the tail is where it is: the run's mean request time split by the
server's own timers, and the causes named when an SLO fails or is marginal.

The split joins loadkit's client-side intervals with the server's request
histograms where it exports them (vLLM's queue, prefill, decode and
end-to-end timers), by the sums and counts each scrape added (additive, so
a long run's merged points keep them):
means add up, so queue + prefill + decode is the server's end to end, and
the client's mean service time minus it is what lies outside the server
(network, gateways, proxies, the client). Percentiles do not add: the tail
is shown part by part (the worst scrape's p99 of each), never summed.

Causes are named when an SLO failed or a time SLO was too close to call
(marginal). Each is a rule over the split, the server's gauges and the
telemetry, and names the evidence that fired it. The rules, most specific first:
the generator (its own lateness: the verdict is already untrusted), cold
starts (model loads in the measured phases), KV-cache pressure (the cache
near full while requests wait, or preemptions), queueing (the queue's share
of the mean), batching (decode dominates and grows with the running batch),
overhead (the remainder's share), GPU limits (clocks held back by power or
heat). Causes sort by the share of the mean request they account for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from loadkit.result.model import (
    Cause,
    Decomposition,
    Health,
    Interval,
    PhaseInfo,
    SLOResult,
    Telemetry,
    TelemetrySeries,
    Verdict,
    Why,
    WhyPoint,
)
from loadkit.workload.slo_spec import TIME_METRICS

# The server's request timers, each part by its names in the engines that
# export one (the first found is used).
TIMERS: dict[str, tuple[str, ...]] = {
    "queue": ("vllm:request_queue_time_seconds", "sglang:queue_time_seconds",
              "tgi_request_queue_duration"),
    "prefill": ("vllm:request_prefill_time_seconds",),
    "decode": ("vllm:request_decode_time_seconds",),
    "server": ("vllm:e2e_request_latency_seconds", "sglang:e2e_request_latency_seconds",
               "tgi_request_duration"),
}
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size")
RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size")
KV_USAGE = ("vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc", "sglang:token_usage")
PREEMPTIONS = ("vllm:num_preemptions_total.rate",)
LOADS = ("loadkit_sim_model_loads_total",)
LOADING = ("loadkit_sim_model_loading",)
# NVML clock event reasons that mean the GPU was held back: SW power cap,
# HW slowdown, SW thermal, HW thermal, HW power brake.
HELD_BACK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80

SHARE = 0.25  # a part of the mean request this large is worth naming
KV_FULL = 0.9
CORRELATED = 0.7


def explain(timeseries: Sequence[Interval], phases: Sequence[PhaseInfo],
            telemetry: Telemetry | None, slos: Sequence[SLOResult], health: Health) -> Why:
    windows = [(p.start_s, p.start_s + p.duration_s) for p in phases if not p.warmup] or \
        [(p.start_s, p.start_s + p.duration_s) for p in phases]
    series = _Series(telemetry)
    decomposition = _decompose(timeseries, windows, series)
    # The tail is in question when an SLO failed, or a time SLO is too close to call.
    breached = any(s.verdict == Verdict.FAIL or (s.marginal and s.metric in TIME_METRICS)
                   for s in slos)
    return Why(decomposition=decomposition,
               over_time=[pt for iv in timeseries if (pt := _point(iv, series)) is not None],
               causes=_causes(decomposition, series, windows, health) if breached else [],
               missing=series.missing())


class _Series:
    """The telemetry's series by metric name (labels summed or weighed)."""

    def __init__(self, telemetry: Telemetry | None) -> None:
        self.interval = (telemetry.interval_s if telemetry else None) or 1.0
        self.by_metric: dict[str, list[TelemetrySeries]] = {}
        for s in (telemetry.series.values() if telemetry else ()):
            self.by_metric.setdefault(s.metric.removeprefix("prom."), []).append(s)

    def first(self, names: Sequence[str]) -> str | None:
        return next((n for n in names if n in self.by_metric), None)

    def points(self, names: Sequence[str], a: float, b: float) -> list[tuple[float, float]]:
        """Every label set's points of the first metric found, in (a, b]."""
        name = self.first(names)
        return [(t, v) for s in self.by_metric.get(name or "", []) for t, v in s.points
                if a < t <= b]

    def mean(self, names: Sequence[str], a: float, b: float) -> tuple[float, float] | None:
        """(mean, count) of a histogram's observations over the scrapes in
        (a, b], in seconds, from their added sums and counts; None: none."""
        name = self.histogram(names)
        if name is None:
            return None
        def total(stat: str) -> float:
            return sum(v for s in self.by_metric.get(f"{name}.{stat}", [])
                       for t, v in s.points if a < t <= b)
        n = total("count")
        return (total("sum") / n, n) if n > 0 else None

    def histogram(self, names: Sequence[str]) -> str | None:
        """The first of these histograms the server exports (with its sums)."""
        return next((n for n in names if f"{n}.sum" in self.by_metric), None)

    def worst(self, names: Sequence[str], a: float, b: float) -> float | None:
        name = self.histogram(names)
        values = [v for s in self.by_metric.get(f"{name}.p99", []) for t, v in s.points
                  if a < t <= b] if name else []
        return max(values) if values else None

    def missing(self) -> list[str]:
        wanted = [("the server's request timers", TIMERS["server"] + TIMERS["queue"]),
                  ("its waiting requests", WAITING), ("its KV-cache usage", KV_USAGE)]
        return [f"{what} ({', '.join(names[:1])} or the like)" for what, names in wanted
                if self.first(names) is None and self.histogram(names) is None]


def _measured(timeseries: Sequence[Interval], windows: list[tuple[float, float]]
              ) -> tuple[list[Interval], list[tuple[float, float]]]:
    """The intervals inside the windows, to 5% of an interval (rotations land
    a millisecond or so off their nominal time: by exact ends, one that late
    fell out, and a 2-s window lost half its requests; one that straddles a
    window's edge, a warm-up's off the intervals' grid, stays out), and the
    spans they cover, for the server's scrapes to match."""
    def within(iv: Interval, a: float, b: float) -> bool:
        slack = 0.05 * (iv.end_s - iv.start_s)
        return a - slack <= iv.start_s and iv.end_s <= b + slack

    ivs, spans = [], []
    for a, b in windows:
        inside = [iv for iv in timeseries if within(iv, a, b)]
        if inside:
            ivs += inside
            spans.append((inside[0].start_s, inside[-1].end_s))
    return ivs, spans


def _decompose(timeseries: Sequence[Interval], windows: list[tuple[float, float]],
               series: _Series) -> Decomposition | None:
    ivs, spans = _measured(timeseries, windows)
    ivs = [iv for iv in ivs if iv.service_mean_ms is not None and iv.completed]
    requests = sum(iv.completed for iv in ivs)
    if not requests:
        return None
    client = sum((iv.service_mean_ms or 0.0) * iv.completed for iv in ivs) / requests
    # A scrape counts the requests that ended since the one before: those of
    # the intervals are their span's scrapes' (less a sliver at either end).
    parts = {part: _over([series.mean(names, a, b) for a, b in spans])
             for part, names in TIMERS.items()}
    tail = {part: round(v * 1000, 3) for part, names in TIMERS.items()
            if (v := max((w for a, b in spans if (w := series.worst(names, a, b))
                          is not None), default=None)) is not None}
    server = parts["server"]
    if server is None and None not in (parts["queue"], parts["prefill"], parts["decode"]):
        server = sum(parts[p] for p in ("queue", "prefill", "decode"))  # type: ignore[misc]
    ms = {k: None if v is None else round(v * 1000, 3) for k, v in parts.items()}
    return Decomposition(
        client_ms=round(client, 3), requests=requests,
        server_ms=None if server is None else round(server * 1000, 3),
        queue_ms=ms["queue"], prefill_ms=ms["prefill"], decode_ms=ms["decode"],
        remainder_ms=None if server is None else round(client - server * 1000, 3),
        tail_ms=tail)


def _over(means: list[tuple[float, float] | None]) -> float | None:
    """A count-weighed mean of several windows' (mean, count)."""
    found = [m for m in means if m is not None]
    weight = sum(n for _, n in found)
    return sum(v * n for v, n in found) / weight if weight else None


def _point(iv: Interval, series: _Series) -> WhyPoint | None:
    if iv.service_mean_ms is None:
        return None
    parts = {part: m[0] * 1000 if (m := series.mean(names, iv.start_s, iv.end_s))
             else None for part, names in TIMERS.items()}
    server = parts["server"]
    return WhyPoint(t_s=iv.end_s, client_ms=iv.service_mean_ms,
                    queue_ms=_r(parts["queue"]), prefill_ms=_r(parts["prefill"]),
                    decode_ms=_r(parts["decode"]),
                    remainder_ms=None if server is None else _r(iv.service_mean_ms - server))


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def _causes(d: Decomposition | None, series: _Series, windows: list[tuple[float, float]],
            health: Health) -> list[Cause]:
    def share(ms: float | None) -> float | None:
        return None if d is None or ms is None or d.client_ms <= 0 else ms / d.client_ms

    def pts(names: Sequence[str]) -> list[float]:
        return [v for a, b in windows for _, v in series.points(names, a, b)]

    def of_mean(ms: float) -> str:
        assert d is not None
        return f"{ms:,.1f} ms of the mean request's {d.client_ms:,.1f} ms ({ms / d.client_ms:.0%})"

    found: list[Cause] = []
    if health.saturated:
        found.append(Cause(name="generator", title="the load generator", evidence=[
            f"its lateness p99 {health.lateness_p99_ms:g} ms is over the bound of "
            f"{health.lateness_bound_ms:g} ms: requests left late, so their latencies are "
            "not the server's (the verdict is untrusted)"]))
    queue = share(d.queue_ms if d else None)
    waiting, running, kv = pts(WAITING), pts(RUNNING), pts(KV_USAGE)
    loads = pts(LOADS)
    loaded = max(loads) - min(loads) if len(loads) > 1 else 0.0
    loading = [v for v in pts(LOADING) if v > 0]
    if loaded > 0 or loading:
        evidence = [f"{loaded:g} model loads during the measured phases"] if loaded else []
        if loading:
            evidence.append(f"a replica was loading the model in {len(loading)} scrapes")
        if d is not None and d.queue_ms is not None:
            evidence.append(f"requests waited {of_mean(d.queue_ms)} (loads count as queue)")
        found.append(Cause(name="cold_start", title="cold starts", evidence=evidence,
                           share=queue))
    preempting = [v for v in pts(PREEMPTIONS) if v > 0]
    if kv and (max(kv) >= KV_FULL and (waiting and max(waiting) >= 1) or preempting):
        evidence = [f"KV-cache {max(kv):.0%} used at peak"]
        if waiting:
            evidence.append(f"{max(waiting):g} requests waiting at peak")
        if preempting:
            evidence.append(f"preemptions up to {max(preempting):.1f}/s")
        found.append(Cause(name="kv_cache", title="KV-cache pressure", evidence=evidence,
                           share=queue))
    if queue is not None and queue >= SHARE and d is not None and d.queue_ms is not None:
        evidence = [f"queue wait {of_mean(d.queue_ms)}"]
        if waiting:
            evidence.append(f"waiting requests peaked at {max(waiting):g} "
                            f"(mean {sum(waiting) / len(waiting):.1f})")
        found.append(Cause(name="queueing", title="queueing", evidence=evidence, share=queue))
    decode = share(d.decode_ms if d else None)
    r = _correlation(series, "decode", RUNNING, windows)
    if decode is not None and decode >= 0.5 and r is not None and r >= CORRELATED and running:
        assert d is not None and d.decode_ms is not None
        found.append(Cause(name="batching", title="batching", share=decode, evidence=[
            f"decode {of_mean(d.decode_ms)}",
            f"decode time rises with the running batch (r = {r:.2f}; batch {min(running):g} "
            f"to {max(running):g})"]))
    rest = share(d.remainder_ms if d else None)
    if rest is not None and rest >= SHARE and d is not None and d.remainder_ms is not None \
            and d.remainder_ms >= 2:
        found.append(Cause(name="overhead", title="overhead outside the server", share=rest,
                           evidence=[f"client − server end to end: {of_mean(d.remainder_ms)}: "
                                     "network, gateways, proxies or the client"]))
    reasons = [int(v) for v in pts(("gpu.clock_reasons",))]
    held = [v for v in reasons if v & HELD_BACK]
    if held:
        found.append(Cause(name="gpu_limits", title="GPU limits", evidence=[
            f"clocks held back by a power cap or heat in {len(held)} of {len(reasons)} "
            "NVML samples"]))
    order = [c.name for c in found]
    return sorted(found, key=lambda c: (c.name != "generator", -(c.share or 0.0),
                                        order.index(c.name)))


def _correlation(series: _Series, part: str, gauge: Sequence[str],
                 windows: list[tuple[float, float]]) -> float | None:
    """Pearson's r between a timer's per-scrape mean and a gauge at the
    same scrapes; None with fewer than 4 pairs or no spread."""
    name = series.histogram(TIMERS[part])
    if name is None:
        return None
    means = {t: v for s in series.by_metric[f"{name}.mean"] for t, v in s.points}
    pairs = [(means[t], g) for a, b in windows for t, g in series.points(gauge, a, b)
             if t in means]
    if len(pairs) < 4:
        return None
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in pairs) / (sx * sy)
