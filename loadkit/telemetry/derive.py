"""Derived telemetry figures: pure functions from samples to run.json's section.

Everything here is plain data in, plain data out (no I/O, no clocks), so the
figures can be re-derived from a saved run and tested on scripted samples.

GPU readings come from the best source present, in this order: hardware
(NVML here or through the agent: series with metric ``gpu.<field>``),
dcgm-exporter, Triton, and last the embedded simulator's ``loadkit_sim_gpu_*``
gauges (then ``simulated`` is true, and ``available`` stays false: nothing
was measured on silicon). Over a window (a phase, the measured phases, one
interval of the run):

- utilisation, power, temperature: mean and max over every GPU's samples;
- idle silicon: 100 − mean utilisation (percent);
- energy: per GPU, the energy counter's rise over the window (interpolated
  at the edges), or where a GPU has no counter, its power integrated over
  time (trapezoids); summed over GPUs. Per request and per 1k output tokens
  divide by the window's completed requests and output tokens;
- cost: price per GPU-hour × GPUs × the window's hours, per 1k requests and
  per 1M output tokens. GPUs: ``telemetry.gpus`` when declared, else those seen.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

from loadkit.record.intervals import bounded
from loadkit.record.recorder import Recorder
from loadkit.result.model import Figures, PhaseInfo, Scope, Telemetry

MAX_POINTS = 2000  # per series in run.json; longer ones keep min/max envelopes

SLO_KEYS = ("gpu.util.mean", "gpu.util.max", "gpu.mem_util.mean", "gpu.mem_util.max",
            "gpu.power.mean", "gpu.power.max", "gpu.temp.mean", "gpu.temp.max",
            "idle_silicon", "energy_per_request",
            "energy_per_1k_output_tokens", "cost_per_1k_requests", "cost_per_1m_output_tokens")

# (view name, {metric: (field, scale)}, label naming the GPU, counts as hardware)
_VIEWS: list[tuple[str, dict[str, tuple[str, float]], str, bool]] = [
    ("hardware", {f"gpu.{f}": (f, 1.0) for f in ("util", "mem_util", "power", "energy",
                                                  "temp", "mem_used")}, "gpu", True),
    ("dcgm", {"DCGM_FI_DEV_GPU_UTIL": ("util", 1.0), "DCGM_FI_DEV_MEM_COPY_UTIL": ("mem_util", 1.0),
              "DCGM_FI_DEV_POWER_USAGE": ("power", 1.0), "DCGM_FI_DEV_GPU_TEMP": ("temp", 1.0),
              "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total": ("energy", 1e-3),  # mJ
              "DCGM_FI_DEV_FB_USED": ("mem_used", 1.0)}, "gpu", True),
    ("triton", {"nv_gpu_utilization": ("util", 100.0), "nv_gpu_power_usage": ("power", 1.0),
                "nv_energy_consumption_total": ("energy", 1.0)}, "gpu_uuid", True),
    ("simulator", {"loadkit_sim_gpu_utilization_ratio": ("util", 100.0),
                   "loadkit_sim_gpu_power_watts": ("power", 1.0),
                   "loadkit_sim_gpu_memory_used_bytes": ("mem_used", 1 / 2**20)},
     "replica", False),
]

Windows = list[tuple[float, float]]


class Points:
    """A series sorted by time: parallel arrays of doubles (16 bytes a
    sample, a day of samples without a Python object each), so a window is
    two binary searches."""

    __slots__ = ("t", "v", "_gap")

    def __init__(self, pairs: Iterable[tuple[float, float]] = ()) -> None:
        flat = np.fromiter((x for p in pairs for x in p), dtype=float).reshape(-1, 2)
        self.t, self.v = self._sorted(flat[:, 0], flat[:, 1])
        self._gap: float | None = None

    @property
    def gap(self) -> float:
        """The median time between readings (computed once)."""
        if self._gap is None:
            self._gap = float(np.median(np.diff(self.t))) if len(self.t) > 1 else 0.0
        return self._gap

    @classmethod
    def of(cls, t: Sequence[float] | np.ndarray, v: Sequence[float] | np.ndarray,
           scale: float = 1.0) -> Points:
        n = min(len(t), len(v))  # a sampler appends t, then v: one may lead
        out = cls()
        out.t, out.v = cls._sorted(np.asarray(t[:n], dtype=float),
                                   np.asarray(v[:n], dtype=float) * scale)
        return out

    @staticmethod
    def _sorted(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(t) > 1 and np.any(t[1:] < t[:-1]):
            order = np.argsort(t, kind="stable")
            return t[order], v[order]
        return t, v

    def __len__(self) -> int:
        return len(self.t)

    def window(self, a: float, b: float) -> np.ndarray:
        """The values at times in [a, b)."""
        lo, hi = np.searchsorted(self.t, [a, b], side="left")
        return self.v[lo:hi]


def telemetry_section(data: dict | None, phases: list[PhaseInfo], recorder: Recorder,
                      stopped_early: bool = False) -> Telemetry:
    """run.json's "telemetry" from the collector's data and the recorder's
    counts: the requests (and tokens) that ended in each phase, as the
    energy and cost of its time were spent on them (Recorder.served)."""
    completed: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    for (what, phase, _s, _t), n in recorder.served.items():
        if what == "completed":
            completed[phase] += n
        elif what == "tokens":
            tokens[phase] += n
    # One row per point of run.json's bounded time series, not per interval.
    intervals = [dataclasses.asdict(iv) for iv in bounded(recorder.intervals)]
    # A run stopped early (abort, Ctrl-C) is costed over the time it ran.
    ended_s = intervals[-1]["end_s"] if intervals and stopped_early else None
    return section(data, phases, intervals, dict(completed), dict(tokens), ended_s)


def section(data: dict | None, phases: list[PhaseInfo], intervals: list[dict],
            completed: dict[str, int], tokens: dict[str, int],
            ended_s: float | None = None) -> Telemetry:
    """The section from the collector's plain data (see the module doc)."""
    data = data or {"sources": [], "series": {}, "gpus": [], "interval_s": None,
                    "reason": "telemetry was not collected"}
    series = {k: {**s, "points": Points.of(s["t"], s["v"]) if "t" in s else
                  Points(tuple(p) for p in s["points"])}
              for k, s in data["series"].items()}
    view_name, hardware, view = gpu_view(series)
    price, declared = data.get("price_per_gpu_hour"), data.get("gpus_declared")
    n_gpus = declared or len({g for per in view.values() for g in per}) or None
    gauges = _gauges(series)

    def block(windows: Windows, requests: int, out_tokens: int, seconds: float) -> Figures:
        out = _gpu_stats(view, windows)
        energy, how = _energy(view, windows)
        if energy is not None:
            out["energy_j"], out["energy_source"] = _r(energy), how
            if requests:
                out["energy_per_request"] = _r(energy / requests)
            if out_tokens:
                out["energy_per_1k_output_tokens"] = _r(energy / out_tokens * 1000)
        if price is not None and n_gpus:
            cost = price * n_gpus * seconds / 3600
            out["cost"] = _r(cost, 6)
            if requests:
                out["cost_per_1k_requests"] = _r(cost / requests * 1000, 6)
            if out_tokens:
                out["cost_per_1m_output_tokens"] = _r(cost / out_tokens * 1e6, 6)
        for name, pts in gauges.items():
            vals = _values(pts, windows)
            if vals:
                out[f"prom.{name}.mean"] = _r(sum(vals) / len(vals))
                out[f"prom.{name}.max"] = _r(max(vals))
        out.update(requests=requests, output_tokens=out_tokens, duration_s=_r(seconds))
        return out

    per_phase, measured = {}, []
    for p in phases:
        a, b = p.start_s, p.start_s + p.duration_s
        if ended_s is not None:
            b = max(a, min(b, ended_s))
        per_phase[p.name] = block([(a, b)], completed.get(p.name, 0), tokens.get(p.name, 0),
                                  b - a)
        if not p.warmup:
            measured.append((p.name, (a, b)))
    overall = block([w for _p, w in measured],
                    sum(completed.get(p, 0) for p, _w in measured),
                    sum(tokens.get(p, 0) for p, _w in measured),
                    sum(b - a for _p, (a, b) in measured))

    rows = []
    for iv in intervals:
        w = [(iv["start_s"], iv["end_s"])]
        row = {k: iv.get(k) for k in ("start_s", "end_s", "completed", "errors", "output_tokens",
                                      "latency_p50_ms", "latency_p99_ms")}
        stats = _gpu_stats(view, w)
        for field in ("util", "mem_util", "power", "temp"):
            if f"gpu.{field}.mean" in stats:
                row[f"gpu.{field}"] = stats[f"gpu.{field}.mean"]
        energy, _how = _energy(view, w)
        if energy is not None:
            row["gpu.energy_j"] = _r(energy)
        for name, pts in gauges.items():
            vals = _values(pts, w)
            if vals:
                row[f"prom.{name}"] = _r(sum(vals) / len(vals))
        rows.append(row)

    sources = data["sources"]
    reasons = [f"{s['kind']} {s['target']}: {s['reason']}" for s in sources
               if s["status"] != "ok" and s.get("reason")]
    available = hardware and any(view.values())
    return Telemetry.model_validate({
        "available": bool(available),
        "reason": "" if available else ("; ".join(reasons) or data.get("reason")
                                        or "no GPU readings from any source"),
        "gpu_source": view_name, "simulated": view_name == "simulator",
        "sources": sources, "interval_s": data.get("interval_s"), "gpus": data.get("gpus", []),
        "price_per_gpu_hour": price, "gpus_priced": n_gpus if price is not None else None,
        "series": {k: {"unit": s["unit"], "kind": s["kind"], "metric": s["metric"],
                       "labels": s["labels"],
                       "points": decimate(s["points"], summed=s["kind"] == "count")}
                   for k, s in sorted(series.items())},
        "per_interval": rows, "phases": per_phase, "all": overall,
    })


def slo_values(telemetry: Telemetry | None, scope: str) -> dict[str, float]:
    """Telemetry figures an SLO can name, for scope `all` or `phase:<name>`.

    Keys: SLO_KEYS and `prom.<metric>.mean` / `.max`; keys without data are
    absent. Other scopes (tenants, scenarios) have no GPU of their own: {}."""
    scope = Scope(scope)
    if telemetry is None or scope.kind not in ("all", "phase"):
        return {}
    block = telemetry.all if scope.kind == "all" else telemetry.phases.get(scope.name, {})
    return {k: float(v) for k, v in block.items()
            if (k in SLO_KEYS or (k.startswith("prom.") and k.endswith((".mean", ".max"))))
            and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def gpu_view(series: dict[str, dict]) -> tuple[str | None, bool, dict[str, dict[str, Points]]]:
    """(view name, is hardware, {field: {gpu id: points}}) from the best source."""
    for name, metrics, label, hardware in _VIEWS:
        view: dict[str, dict[str, Points]] = defaultdict(dict)
        for key, s in series.items():
            for metric, (field, scale) in metrics.items():
                is_hw = s["source"] in ("nvml", "agent")
                if (name == "hardware") != is_hw:
                    continue
                if s["metric"] == metric or s["metric"].endswith("." + metric) and not is_hw:
                    gpu = f"{s['source']}:{s['metric'][:-len(metric)]}{s['labels'].get(label, key)}"
                    view[field][gpu] = Points.of(s["points"].t, s["points"].v, scale)
        if view.get("util") or view.get("power"):
            return name, hardware, dict(view)
    return None, False, {}


def decimate(points: Points, limit: int = MAX_POINTS,
             summed: bool = False) -> list[list[float]]:
    """At most `limit` points: buckets keep their min and max, in time order;
    `summed` (per-scrape counts and sums, which add up): one point a bucket,
    its sum at its last time, so a window's total survives."""
    t, v = points.t, points.v
    if summed and len(t) > limit:
        edges = np.linspace(0, len(t), limit + 1).astype(int)
        return [[round(float(t[z - 1]), 3), float(f"{float(np.sum(v[a:z])):.6g}")]
                for a, z in zip(edges, edges[1:]) if z > a]
    if len(t) <= limit:
        keep: Iterable[int] = range(len(t))
    else:
        buckets, size = limit // 2, len(t) / (limit // 2)
        chosen = []
        for b in range(buckets):
            a, z = int(b * size), int((b + 1) * size)
            if z > a:
                lo, hi = a + int(np.argmin(v[a:z])), a + int(np.argmax(v[a:z]))
                chosen += sorted({lo, hi})
        keep = chosen
    # Six significant digits: a request timer's mean in seconds keeps its µs
    # (slo/why.py subtracts it from the client's), a counter its units.
    return [[round(float(t[i]), 3), float(f"{float(v[i]):.6g}")] for i in keep]


def _gauges(series: dict[str, dict]) -> dict[str, Points]:
    """Scraped gauges, rates and quantiles by metric, label sets together."""
    out: dict[str, list[Points]] = defaultdict(list)
    for s in series.values():
        if s["source"] == "prometheus" and s["kind"] != "counter":
            out[s["metric"]].append(s["points"])
    return {k: Points.of(np.concatenate([p.t for p in ps]), np.concatenate([p.v for p in ps]))
            for k, ps in out.items()}


def _values(points: Points, windows: Windows) -> list[float]:
    out: list[float] = []
    for a, b in windows:
        out += points.window(a, b).tolist()
    return out


def _gpu_stats(view: dict[str, dict[str, Points]], windows: Windows) -> dict:
    out: dict[str, float] = {}
    for field in ("util", "mem_util", "power", "temp"):
        vals = [v for pts in view.get(field, {}).values() for v in _values(pts, windows)]
        if vals:
            out[f"gpu.{field}.mean"] = _r(sum(vals) / len(vals))
            out[f"gpu.{field}.max"] = _r(max(vals))
    if "gpu.util.mean" in out:
        out["idle_silicon"] = _r(100.0 - out["gpu.util.mean"])
    return out


def _energy(view: dict[str, dict[str, Points]], windows: Windows) -> tuple[float | None, str]:
    """Joules over the windows, all GPUs; and how: counter, power or mixed.
    None where a GPU's readings stop short of the windows (a sampler lost
    mid-run): held flat past them, its energy would read low, unsaid."""
    counters, powers = view.get("energy", {}), view.get("power", {})
    total, how = None, set()
    for gpu in set(counters) | set(powers):
        joules = None
        if (pts := counters.get(gpu)) is not None and _covers(pts, windows):
            deltas = [_at(pts, b) - _at(pts, a) for a, b in windows]
            if all(d >= 0 for d in deltas):  # a negative rise is a reset: use power
                joules, kind = sum(deltas), "counter"
        if joules is None and (pts := powers.get(gpu)) is not None and _covers(pts, windows):
            joules, kind = sum(_integral(pts, a, b) for a, b in windows), "power"
        if joules is None:  # its readings stop short, or say nothing usable
            return None, ""
        total = (total or 0.0) + joules
        how.add(kind)
    return total, (how.pop() if len(how) == 1 else "mixed")


def _covers(points: Points, windows: Windows) -> bool:
    """Readings from the windows' start to their end, to two sampling gaps."""
    if len(points.t) < 2 or not windows:
        return False
    slack = 2.0 * points.gap
    return bool(points.t[0] <= min(a for a, _ in windows) + slack
                and points.t[-1] >= max(b for _, b in windows) - slack)


def _at(points: Points, x: float) -> float:
    """Linear interpolation, held flat beyond the first and last points."""
    t, v = points.t, points.v
    i = int(np.searchsorted(t, x, side="left"))
    if i == 0:
        return v[0]
    if i == len(t):
        return v[-1]
    t0, t1, v0, v1 = float(t[i - 1]), float(t[i]), float(v[i - 1]), float(v[i])
    return v0 if t1 == t0 else v0 + (v1 - v0) * (x - t0) / (t1 - t0)


def _integral(points: Points, a: float, b: float) -> float:
    """Trapezoids of the piecewise-linear curve over [a, b] ∩ the points' span."""
    lo, hi = max(a, points.t[0]), min(b, points.t[-1])
    if hi <= lo:
        return 0.0
    i = int(np.searchsorted(points.t, lo, side="right"))
    j = int(np.searchsorted(points.t, hi, side="left"))
    ts = np.concatenate(([lo], points.t[i:j], [hi]))
    vs = np.concatenate(([_at(points, lo)], points.v[i:j], [_at(points, hi)]))
    return float(np.sum(np.diff(ts) * (vs[1:] + vs[:-1]) / 2))


def _r(v: float, digits: int = 3) -> float:
    return round(float(v), digits)


def describe(telemetry: Telemetry) -> list[str]:
    """Plain lines about the section, for the text reports."""
    lines = []
    if not telemetry.available:
        lines.append(f"GPU telemetry unavailable: {telemetry.reason or 'no readings'}")
    if telemetry.simulated:
        lines.append("GPU figures are the simulator's (loadkit_sim_gpu_*), not hardware readings")
    lines += [f"{s.kind} {s.target}: {s.errors} errors, the last after it had sampled: "
              f"{s.last_error}" + ("; energy is left out where its readings stop short"
                                   if s.kind != "prometheus" else "")
              for s in telemetry.sources if s.last_error]
    a = telemetry.all
    figures: Iterable[tuple[str, str]] = (
        ("gpu.util.mean", "GPU utilisation mean %"), ("gpu.util.max", "max %"),
        ("gpu.power.mean", "power mean W"), ("energy_per_request", "energy per request J"),
        ("cost_per_1k_requests", "cost per 1k requests"))
    got = [f"{label} {a[k]:g}" for k, label in figures if k in a]
    if got:
        lines.append(", ".join(got))
    return lines
