"""What the live view shows, computed where the run already computes it.

`LiveFeed` is a recorder listener (record/events.py: interval_closed, on the
recorder's thread, never on the loop that releases requests). Per interval
it turns what the recorder just closed into one small *frame* (plain JSON
data: latency and TTFT p50/p90/p99/max, throughput, goodput, errors by
kind, in-flight, per-tenant p99, the generator's lateness and CPU, the last
value of each GPU and server gauge) and hands it to a `Frames` buffer; a
browser never costs the run more than that. SLOs judged over their scope so
far (a percentile's confidence interval walks a histogram: milliseconds)
are judged on a worker thread of their own, as the Prometheus exporter does
(run/exporter.py); windowed and trend SLOs are read from the live judge's
windows.

`Frames` keeps at most 2·limit points, whatever the run's length: once full,
adjacent points merge (min/max kept as extremes, the rest averaged over the
time they cover) and each point covers twice the intervals, like the
recorder's own IntervalSeries. A two-hour or two-day run holds the same few
hundred kilobytes, on the server and in the page.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from loadkit.record.histogram import HdrHistogram, merged, percentiles_us
from loadkit.result.model import SLOResult
from loadkit.run.so_far import SoFarJudge
from loadkit.workload.slo_spec import TIME_METRICS

if TYPE_CHECKING:
    from loadkit.record.recorder import Interval, Recorder
    from loadkit.slo.live import LiveJudge
    from loadkit.slo.scopes import Phases
    from loadkit.workload.slo_spec import Objective

__all__ = ["FRAME_POINTS", "Frames", "LiveFeed", "merge_frames"]

FRAME_POINTS = 720  # closed points kept: between 720 and 1,440 on screen
PERCENTILES = (50.0, 90.0, 99.0)
MAX_GAUGES = 12  # telemetry series drawn (GPUs first)
# Fields merged as extremes (a spike stays visible); the rest are time-weighted means.
_PEAKS = {"late", "inflight"}
_BUSY = re.compile(r"waiting|running|cache_usage|kv_cache")  # server gauges drawn after the GPUs'
_LIVE_METRICS = (*TIME_METRICS, "error_rate", "goodput", "throughput", "output_tokens_per_s")


def merge_frames(group: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One point for consecutive frames: percentile lists keep p50/p90 as
    means and p99/max as the worst; counts (`err`) add up; rates, CPU and
    gauges are averaged over the seconds each frame covers."""
    first, last = group[0], group[-1]
    weights = [max(f["t1"] - f["t0"], 1e-9) for f in group]
    out: dict[str, Any] = {"t0": first["t0"], "t1": last["t1"],
                           "k": sum(f.get("k", 1) for f in group)}
    for key in ("lat", "ttft"):
        rows = [(f[key], w) for f, w in zip(group, weights) if f.get(key)]
        if rows:
            total = sum(w for _r, w in rows)
            out[key] = [round(sum(r[i] * w for r, w in rows) / total, 3) for i in (0, 1)] + \
                [max(r[2] for r, _w in rows), max(r[3] for r, _w in rows)]
    for key in ("rps", "good", "tok", "cpu", "late", "inflight"):
        pairs = [(f[key], w) for f, w in zip(group, weights) if f.get(key) is not None]
        if pairs:
            out[key] = max(v for v, _w in pairs) if key in _PEAKS else \
                round(sum(v * w for v, w in pairs) / sum(w for _v, w in pairs), 3)
    for key, how in (("err", "sum"), ("ten", "max"), ("tele", "mean")):
        merged_map: dict[str, list[float]] = {}
        for f in group:
            for name, v in (f.get(key) or {}).items():
                merged_map.setdefault(name, []).append(v)
        if merged_map:
            out[key] = {n: sum(vs) if how == "sum" else max(vs) if how == "max"
                        else round(sum(vs) / len(vs), 3) for n, vs in merged_map.items()}
    return out


class Frames:
    """The live series, bounded: `closed` points (each covering `size`
    intervals, never changed once closed), and the `open` point being
    filled. `gen` changes whenever the closed points are merged, so a reader
    knows to take them all again. Not thread-safe: the view locks it."""

    def __init__(self, limit: int = FRAME_POINTS) -> None:
        self.limit = limit
        self.size = 1
        self.gen = 0
        self.count = 0  # intervals added
        self.closed: list[dict[str, Any]] = []
        self._raw: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None

    def add(self, frame: dict[str, Any]) -> None:
        self.count += 1
        self._raw.append(frame)
        if len(self._raw) < self.size:
            self.open = merge_frames(self._raw)
            return
        self.closed.append(self._raw[0] if self.size == 1 else merge_frames(self._raw))
        self._raw, self.open = [], None
        if len(self.closed) >= 2 * self.limit:
            self.closed = [merge_frames(self.closed[i:i + 2])
                           for i in range(0, len(self.closed), 2)]
            self.size *= 2
            self.gen += 1

    def points(self) -> list[dict[str, Any]]:
        return self.closed + ([self.open] if self.open is not None else [])


class LiveFeed:
    """The recorder listener behind the live view: `publish(frame, slos,
    extras)` is called once per interval on the recorder's thread (the view
    stores and wakes its streams), `publish_slos(rows)` from the SLO worker."""

    def __init__(self, recorder: Recorder, *, publish: Callable[[dict, dict], None],
                 publish_slos: Callable[[list[dict[str, Any]]], None],
                 phases: Phases, objectives: Sequence[Objective], judge: LiveJudge | None,
                 strict: bool, in_flight: Callable[[], int], telemetry: Any = None,
                 workers: Callable[[], Any] | None = None) -> None:
        self.recorder, self.publish, self.judge = recorder, publish, judge
        self.in_flight, self.telemetry, self.workers = in_flight, telemetry, workers
        self._errors: Counter = Counter()
        self._good = 0
        self._gauges: dict[str, str] = {}
        tracked = {t.objective.name for t in judge.tracked
                   if t.window_s is not None} if judge else set()
        self.objectives = list(objectives)
        live = [o for o in objectives if o.metric in _LIVE_METRICS and o.trend is None
                and o.name not in tracked]
        self._worker = SoFarJudge(
            live, phases, strict, lambda end_s, results: publish_slos(
                [slo_row(r, as_of_s=end_s) for r in results]), name="loadkit-ui-slo") \
            if live else None
        if self._worker is not None:
            self._worker.start()
        recorder.events.interval_closed.add_listener(self.on_interval)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def on_interval(self, iv: Interval, hists: dict, _keyed: Counter) -> None:
        rec = self.recorder
        seconds = max(iv.end_s - iv.start_s, 1e-9)
        frame: dict[str, Any] = {"t0": round(iv.start_s, 3), "t1": round(iv.end_s, 3),
                                 "rps": round(iv.completed / seconds, 3),
                                 "tok": round(iv.output_tokens / seconds, 3),
                                 "inflight": self.in_flight()}
        lat = [h for k, h in hists.items() if k[0] == "latency"]
        if iv.latency_p99_ms is not None and lat:
            frame["lat"] = [iv.latency_p50_ms, _p90(lat), iv.latency_p99_ms, iv.latency_max_ms]
        ttft = [h for k, h in hists.items() if k[0] == "ttft" and h.get_total_count()]
        if ttft:
            h = ttft[0] if len(ttft) == 1 else merged(ttft)
            p = percentiles_us(h, PERCENTILES)
            frame["ttft"] = [p[q] / 1000.0 for q in PERCENTILES] + [h.get_max_value() / 1000.0]
        if rec.goodput:
            good = sum(dict(rec.good).values())
            frame["good"] = round((good - self._good) / seconds, 3)
            self._good = good
        errors: Counter = Counter()
        for (kind, *_scope), n in dict(rec.errors).items():
            errors[kind] += n
        moved = {k: n - self._errors[k] for k, n in errors.items() if n != self._errors[k]}
        self._errors = errors
        if moved:
            frame["err"] = moved
        if iv.lateness_p99_ms is not None:
            frame["late"] = iv.lateness_p99_ms
        if iv.cpu_percent is not None:
            frame["cpu"] = iv.cpu_percent
        if iv.tenant_latency_p99_ms:
            frame["ten"] = dict(iv.tenant_latency_p99_ms)
        if self.telemetry is not None and (gauges := _gauges(self.telemetry, self._gauges)):
            frame["tele"] = gauges
        extras: dict[str, Any] = {
            "examples": {k: list(v) for k, v in dict(rec.error_examples).items()},
            "windows": self._windows()}
        if self.workers is not None:
            extras["workers"] = self.workers()
        self.publish(frame, extras)
        if self._worker is not None:
            self._worker.put(iv.end_s, hists, rec)

    def _windows(self) -> list[dict[str, Any]]:
        """Windowed and trend SLOs: their windows closed so far (the judge's)."""
        out = []
        for t in self.judge.tracked if self.judge else ():
            if t.window_s is None:
                continue
            o = t.objective
            out.append({"name": o.name, "window_s": t.window_s, "trend": o.trend is not None,
                        "windows": [w.model_dump(mode="json") for w in t.windows[-20:]],
                        "closed": len(t.windows),
                        "passed": sum(w.verdict == "pass" for w in t.windows)})
        return out


def _p90(hists: list[HdrHistogram]) -> float:
    h = hists[0] if len(hists) == 1 else merged(hists)
    return percentiles_us(h, (90.0,))[90.0] / 1000.0


def _gauges(session: Any, chosen: dict[str, str]) -> dict[str, float]:
    """The last value of each GPU and server gauge: GPU series first, then the
    server's queue and cache gauges, MAX_GAUGES at most, chosen as they
    first appear and kept (`chosen`: key -> label), so a chart never
    changes its series. The samplers append on their threads; a length
    read and an index are single steps under the GIL, so nothing waits."""
    out: dict[str, float] = {}
    try:
        for source in session.sources:
            for key, s in list(source.store.series.items()):
                label = chosen.get(key)
                if label is None:
                    if len(chosen) >= MAX_GAUGES or s.get("kind") == "counter" \
                            or "_total" in key or "gpu" not in key.lower() \
                            and not _BUSY.search(key):
                        continue
                    label = chosen[key] = key + (f" ({s['unit']})" if s.get("unit") else "")
                if len(v := s["v"]):
                    out[label] = round(v[-1], 3)
    except Exception:  # noqa: BLE001 - telemetry never stops a run, nor its view
        return {}
    return out


def slo_row(r: SLOResult, as_of_s: float | None) -> dict[str, Any]:
    """What the page's SLO table shows of one result."""
    return {"name": r.name, "scope": str(r.scope), "observed": r.observed, "unit": r.unit,
            "op": r.op, "threshold": r.threshold, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "samples": r.samples, "state": str(r.verdict), "as_of_s": as_of_s,
            "reason": r.reason}
