"""Synthetic run.json documents for the report tests (this module holds no
tests): a 24-hour soak at 1-s intervals, or any shorter run of the same shape,
with one 1-s latency spike for decimation to keep."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from loadkit.record.histogram import encode, new_histogram, record_us

DAY = 86_400
SPIKE_AT = 51_234  # the one interval whose p99 spikes
SPIKE_MS = 7_654.321


def _hist(values_us: Iterable[float]) -> str:
    h = new_histogram()
    for v in values_us:
        record_us(h, int(v))
    return encode(h)


def synthetic_day(intervals: int = DAY, telemetry_step: float = 0.25) -> dict:
    """A run.json document as a 24-hour soak at 1-s intervals would write it."""
    rng = np.random.default_rng(7)
    t = np.arange(intervals, dtype=float)
    wave = 1 + 0.3 * np.sin(2 * math.pi * t / DAY)
    p99 = np.round(180 * wave + rng.normal(0, 5, intervals), 3)
    spike = SPIKE_AT if intervals > SPIKE_AT else intervals // 2
    p99[spike] = SPIKE_MS
    timeseries = [{"start_s": float(i), "end_s": float(i + 1), "completed": int(10 * wave[i]),
                   "errors": int(i % 3600 == 0), "output_tokens": int(640 * wave[i]),
                   "latency_p50_ms": float(round(p99[i] / 3, 3)), "latency_p99_ms": float(p99[i]),
                   "latency_max_ms": float(p99[i] * 1.2), "lateness_p99_ms": 0.4,
                   "tenant_latency_p99_ms": {}}
                  for i in range(intervals)]
    tt = np.arange(0, intervals, telemetry_step)
    util = np.round(60 + 30 * np.sin(2 * math.pi * tt / DAY), 1)
    util[int(spike / telemetry_step)] = 100.0
    power = np.round(300 + 200 * np.sin(2 * math.pi * tt / DAY), 1)
    samples = rng.lognormal(math.log(60_000), 0.5, 20_000)
    hists = {f"{m}.soak.chat.default": _hist(samples * k) for m, k in
             (("latency", 1.0), ("service_time", 0.9), ("ttft", 0.2), ("itl", 0.02),
              ("tpot", 0.025), ("lateness", 0.001))}
    slo = {"name": "latency p99 < 1s", "text": "latency p99 < 1s", "metric": "latency",
           "scope": "all", "op": "<", "threshold": 1000.0, "unit": "ms", "observed": 212.0,
           "samples": 864_000, "verdict": "pass", "reason": "", "ci_low": 210.0,
           "ci_high": 214.0, "marginal": False}
    return {
        "schema_version": 1, "run_id": "day", "loadkit_version": "0.1.0", "host": "h",
        "git_commit": "0" * 40, "started_at": "2025-01-01T00:00:00+00:00",
        "finished_at": "2025-01-02T00:00:00+00:00", "target": "http://gpu:8000",
        "closed_loop": False,
        "workload": {"name": "soak", "path": "soak.yaml", "sha256": "ab" * 32, "seed": 1,
                     "duration_s": float(intervals), "warmup_s": 0.0, "interval_s": 1.0,
                     "spec": {"name": "soak"}},
        "phases": [{"name": "soak", "start_s": 0.0, "duration_s": float(intervals),
                    "warmup": False}],
        "verdict": "pass", "trusted": True, "untrusted_reasons": [], "slos": [slo],
        "counts": {"completed": 864_000, "errors": 24, "dropped": 0, "unfinished": 0,
                   "warmup_completed": 0, "scheduled": {"soak/default": 864_024}},
        "throughput": {"requests_per_s": 10.0, "output_tokens_per_s": 640.0},
        "errors": {"by_kind": {"http_5xx": 24}, "examples": {"http_5xx": ["HTTP 503: busy"]}},
        "tokens": {"output_total": 55_296_000, "source": {"usage": 864_000}},
        "health": {"cpu_percent": 4.0, "steal_percent": 0.1, "lateness_p99_ms": 0.4,
                   "lateness_bound_ms": 10.0, "saturated": False},
        "isolation": {},
        "series": {"latency": {"all": {"count": 864_000, "p50": 60.0, "p90": 110.0,
                                       "p95": 130.0, "p99": 212.0, "p99.9": 300.0,
                                       "max": SPIKE_MS, "mean": 68.0}}},
        "timeseries": timeseries,
        "histograms": hists,
        "telemetry": {
            "available": True, "reason": "", "gpu_source": "hardware", "simulated": False,
            "interval_s": telemetry_step, "gpus": [{"index": 0, "name": "H100"}],
            "sources": [{"kind": "nvml", "target": "local", "status": "ok", "reason": "",
                         "samples": len(tt)}],
            # as telemetry.derive writes them: at most 2,000 points per series
            "series": {"vllm:num_requests_waiting": {
                "unit": "", "kind": "gauge", "metric": "vllm:num_requests_waiting", "labels": {},
                "points": [[float(x), float(i % 5)] for i, x in
                           enumerate(np.linspace(0, intervals, 2000))]}},
            "per_interval": [{"start_s": float(i), "end_s": float(i + 1),
                              "gpu.util": float(util[int(i / telemetry_step)]),
                              "gpu.power": float(power[int(i / telemetry_step)])}
                             for i in range(intervals)],
            "phases": {}, "all": {"gpu.util.mean": 60.0, "gpu.power.mean": 300.0}},
    }
