"""HDR histograms in integer microseconds (1 µs .. 1 h, 3 significant digits).

Merged, never averaged. Summaries are reported in milliseconds. The one
module that imports hdrh: the rest of loadkit uses the type, the codec and
the counts array through it.
"""

from __future__ import annotations

import math
import weakref
import zlib
from collections.abc import Iterable

import numpy as np
from hdrh.codec import HdrCookieException, HdrHistogramSettingsException, HdrLengthException
from hdrh.histogram import HdrHistogram

__all__ = ["DamagedHistogram", "HdrHistogram", "add_into", "bucket_counts", "count_above", "decode",
           "encode", "merged",
           "new_histogram", "percentile_us", "percentiles_us", "rank_at", "record_us",
           "recorded_us", "summary_ms", "value_at_rank_us"]

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
DIGITS = 3
SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return acyclic(HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS))


def acyclic(h: HdrHistogram) -> HdrHistogram:
    """Break hdrh's histogram <-> encoder reference cycle (~190 KB each).

    Cyclic garbage waits for the cyclic collector, which a run tunes to run
    rarely (engine.loop.quiet_collector): every rotated or merged histogram
    then stayed in memory, +1.8 GB an hour at 10 req/s. With a weak
    back-reference a histogram is freed the moment its last user drops it."""
    h.encoder.histogram = weakref.proxy(h)
    return h


def record_us(h: HdrHistogram, value_us: int, count: int = 1) -> None:
    """Record one value (`count` times), clamped into the trackable range
    (never dropped)."""
    h.record_value(min(max(value_us, LOWEST_US), HIGHEST_US), count)


def add_into(total: HdrHistogram, part: HdrHistogram) -> None:
    """`total.add(part)` for two loadkit histograms (one layout): the counts
    added as numpy arrays, without hdrh's per-call checks in Python (half an
    add's cost: a day's rebuild adds a million)."""
    if not part.total_count:
        return
    if part.counts_len != total.counts_len:
        total.add(part)  # another layout: hdrh re-buckets it
        return
    counts = np.ctypeslib.as_array(total.counts)[:total.counts_len]
    counts += np.ctypeslib.as_array(part.counts)[:part.counts_len]
    total.total_count += part.total_count
    total.max_value = max(total.max_value, part.max_value)
    total.min_value = min(total.min_value, part.min_value)


def merged(histograms: Iterable[HdrHistogram]) -> HdrHistogram:
    out = new_histogram()
    for h in histograms:
        add_into(out, h)
    return out


def rank_at(percentile: float, total: int) -> int:
    """The 1-based rank of `percentile` of `total` samples: the nearest rank,
    ceil(p/100 * n), at least 1, as HdrHistogram's Java reference reads it
    ("round up ... so that the largest value the requested percentile of
    recorded values is <= is included"). The Python port rounds to nearest
    instead: p99 of 1,060 samples with 11 at 200 ms read 10 ms there, though
    1.04% took 200 ms, the share a `p99 < 100ms` SLO forbids. The rounding
    to 6 places drops floating-point noise (99.0 * 1000 / 100 = 990.0000000001)."""
    return max(math.ceil(round(min(max(percentile, 0.0), 100.0) * total / 100.0, 6)), 1)


def percentiles_us(h: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """Each percentile's value (see rank_at), from one numpy pass over the
    counts: hdrh walks the buckets in Python (1.1 ms for one histogram of a
    second's latencies), on the recorder's thread every interval, where it
    holds the GIL the event loop is waiting for. The value is its bucket's
    highest equivalent (its lowest for the 0th percentile), as hdrh gives it."""
    total = h.get_total_count()
    if not total:
        return dict.fromkeys(percentiles, 0)
    cumulative = np.cumsum(np.ctypeslib.as_array(h.counts)[:h.counts_len])
    return {p: _at(h, cumulative, rank_at(p, total), lowest=not p) for p in percentiles}


def value_at_rank_us(h: HdrHistogram, rank: int, lowest: bool = False) -> int:
    """The `rank`-th smallest sample (1-based): its bucket's highest
    equivalent value, or its lowest with `lowest`; 0 past the last sample."""
    cumulative = np.cumsum(np.ctypeslib.as_array(h.counts)[:h.counts_len])
    return _at(h, cumulative, max(rank, 1), lowest)


def _at(h: HdrHistogram, cumulative: np.ndarray, rank: int, lowest: bool) -> int:
    index = int(np.searchsorted(cumulative, rank))  # the first bucket reaching it
    if index >= h.counts_len:
        return 0
    value = h.get_value_from_index(index)
    return h.get_lowest_equivalent_value(value) if lowest else \
        h.get_highest_equivalent_value(value)


def count_above(h: HdrHistogram, value_us: int) -> tuple[int, int]:
    """Samples above `value_us`: (those surely above: in buckets wholly above
    it, those maybe above: also its own bucket, whose values lie within the
    histogram's resolution of it)."""
    total = h.get_total_count()
    if not total:
        return 0, 0
    value = min(max(int(value_us), LOWEST_US), HIGHEST_US)
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    index = min(h._counts_index_for(value), h.counts_len - 1)
    maybe = int(counts[index:].sum())
    return maybe - int(counts[index]), maybe


def percentile_us(h: HdrHistogram, percentile: float) -> int:
    """One percentile's value (see rank_at and percentiles_us)."""
    return percentiles_us(h, (percentile,))[percentile]


def summary_ms(h: HdrHistogram) -> dict[str, float | int]:
    """count, p50 .. p99.9, max and mean in milliseconds."""
    count = h.get_total_count()
    if count == 0:
        return {"count": 0}
    values = percentiles_us(h, SUMMARY_PERCENTILES)
    out: dict[str, float | int] = {"count": count}
    for p in SUMMARY_PERCENTILES:
        out[f"p{p:g}"] = values[p] / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    out["mean"] = round(mean_us(h) / 1000.0, 3)
    return out


def recorded_us(h: HdrHistogram) -> tuple[list[int], list[int]]:
    """(each recorded bucket's highest equivalent value, its count), as
    hdrh's recorded iterator gives them, from the non-zero counts alone: the
    iterator walks every bucket up to the maximum in Python."""
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    nonzero = np.flatnonzero(counts).tolist()
    highest = h.get_highest_equivalent_value
    return ([highest(h.get_value_from_index(i)) for i in nonzero],
            counts[nonzero].astype(np.int64).tolist())


def mean_us(h: HdrHistogram) -> float:
    """hdrh's mean (each value at the middle of its bucket), over the recorded
    buckets only: hdrh walks every bucket up to the maximum in Python (40 ms
    for one histogram spanning 100 ms; a run has dozens)."""
    total = h.get_total_count()
    if not total:
        return 0.0
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    lowest = h.get_lowest_equivalent_value
    width = h._hdr_size_of_equiv_value_range
    acc = 0
    for index in np.flatnonzero(counts).tolist():
        value = h.get_value_from_index(index)
        acc += int(counts[index]) * (lowest(value) + (width(value) >> 1))
    return acc / total


def encode(h: HdrHistogram) -> str:
    return h.encode().decode("ascii")


class DamagedHistogram(ValueError):
    """An encoded histogram that does not decode (cut, altered, not one)."""


def decode(payload: str) -> HdrHistogram:
    try:
        return acyclic(HdrHistogram.decode(payload))
    except (ValueError, zlib.error, HdrCookieException, HdrLengthException,
            HdrHistogramSettingsException) as exc:
        raise DamagedHistogram(f"{type(exc).__name__}: {exc}") from None


class _Layout:
    """Where each bucket bound falls in a loadkit histogram's counts array, and
    each count's mid value (µs); every histogram has the same layout."""

    def __init__(self, bounds_s: tuple[float, ...]) -> None:
        h = new_histogram()
        self.length = h.counts_len
        # Segment starts: [0, idx(b0)+1, ...]: segment k holds the values <= bound k
        # and above bound k-1 (to the histogram's resolution, 0.1%); the last one
        # the rest (+Inf).
        ends = [h._counts_index_for(round(b * 1e6)) for b in bounds_s]
        self.starts = np.array([0] + [i + 1 for i in ends], dtype=np.intp)
        if np.any(np.diff(self.starts) <= 0) or self.starts[-1] >= self.length:
            raise AssertionError("bucket bounds must fall in distinct histogram buckets")
        # Each index's value range is [value, value + width): hdrh's mean takes its middle.
        i = np.arange(self.length, dtype=np.int64)
        bucket = (i >> h.sub_bucket_half_count_magnitude) - 1
        sub = (i & (h.sub_bucket_half_count - 1)) + h.sub_bucket_half_count
        first = bucket < 0
        sub[first] -= h.sub_bucket_half_count
        bucket[first] = 0
        shift = bucket + h.unit_magnitude
        self.mid_us = ((sub << shift) + ((np.int64(1) << shift) >> 1)).astype(np.uint64)


_layouts: dict[tuple[float, ...], _Layout] = {}


def bucket_counts(h: HdrHistogram, bounds_s: tuple[float, ...]) -> tuple[np.ndarray, int]:
    """(counts per bucket of `bounds_s` (seconds) then +Inf, not cumulative;
    sum in µs): a Prometheus histogram of what `h` recorded."""
    layout = _layouts.get(bounds_s)
    if layout is None:
        layout = _layouts[bounds_s] = _Layout(bounds_s)
    counts = np.ctypeslib.as_array(h.counts)[:h.counts_len]
    per_bucket = np.add.reduceat(counts, layout.starts)
    top = h._counts_index_for(h.get_max_value()) + 1  # nothing recorded above
    return per_bucket.astype(np.int64), int(counts[:top] @ layout.mid_us[:top])
