"""Decimation of long time series into min/max/mean envelopes.

A 24-hour soak at 1-s intervals is 86,400 points per series: too many to draw
and to ship in a report, and plain subsampling would drop a 1-s spike. Here a
series is cut into at most `max_points` equal spans of time, and each span
keeps its lowest, highest and mean value, so every extreme survives (the
envelope is drawn around the mean). Pure functions over numpy arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_POINTS = 1200


@dataclass(frozen=True)
class Envelope:
    """One point per bucket: its time (the span's middle, or the sample's own
    time when undecimated), and the lowest, highest and mean value in it."""

    t: np.ndarray
    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    decimated: bool

    def __len__(self) -> int:
        return len(self.t)


def as_array(values: Iterable[float | None]) -> np.ndarray:
    """Floats, with None as NaN (an interval without that measurement)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def decimate(t: Sequence[float] | np.ndarray, v: Sequence[float | None] | np.ndarray,
             max_points: int = DEFAULT_POINTS) -> Envelope:
    """Bucket (t, v) into at most `max_points` equal time spans.

    `t` need not be sorted or evenly spaced; NaN values are left out (a span
    with none of its own is left out too). With `max_points` or fewer
    samples, the series comes back as it is (low = high = mean = v)."""
    if max_points < 1:
        raise ValueError("max_points must be at least 1")
    ts = np.asarray(t, dtype=float)
    vs = (v if isinstance(v, np.ndarray) else as_array(v)).astype(float, copy=False)
    if ts.shape != vs.shape:
        raise ValueError(f"times and values differ in length: {ts.shape} vs {vs.shape}")
    keep = np.isfinite(vs) & np.isfinite(ts)
    ts, vs = ts[keep], vs[keep]
    order = np.argsort(ts, kind="stable")
    ts, vs = ts[order], vs[order]
    if len(ts) <= max_points:
        return Envelope(ts, vs, vs, vs, False)
    t0, t1 = ts[0], ts[-1]
    width = (t1 - t0) / max_points or 1.0
    idx = np.minimum(((ts - t0) / width).astype(np.int64), max_points - 1)
    buckets, starts = np.unique(idx, return_index=True)
    counts = np.diff(np.append(starts, len(vs)))
    return Envelope(t=t0 + (buckets + 0.5) * width,
                    low=np.minimum.reduceat(vs, starts),
                    high=np.maximum.reduceat(vs, starts),
                    mean=np.add.reduceat(vs, starts) / counts,
                    decimated=True)


def decimate_points(points: Iterable[tuple[float, float]],
                    max_points: int = DEFAULT_POINTS) -> Envelope:
    """The same for `(t, v)` pairs (a telemetry series' points)."""
    pairs = list(points)
    if not pairs:
        return decimate([], [], max_points)
    t, v = zip(*pairs)
    return decimate(t, as_array(v), max_points)
