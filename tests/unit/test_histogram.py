"""The HDR histogram helpers: exact means fast, and no reference cycles."""

from __future__ import annotations

import gc
import math
import random
import weakref
from pathlib import Path

import numpy as np
import pytest

from loadkit.record.histogram import (
    add_into,
    decode,
    encode,
    mean_us,
    merged,
    new_histogram,
    percentile_us,
    percentiles_us,
    record_us,
    recorded_us,
)
from loadkit.record.hlog import HlogWriter, read_hlog


def test_mean_equals_hdrh_mean_exactly() -> None:
    rng = random.Random(5)
    for sigma in (0.1, 1.0, 2.5):
        h = new_histogram()
        for _ in range(3000):
            h.record_value(max(1, int(rng.lognormvariate(9, sigma))))
        assert mean_us(h) == h.get_mean_value()
        assert mean_us(decode(encode(h))) == h.get_mean_value()
    assert mean_us(new_histogram()) == 0.0



def test_recorded_buckets_are_hdrhs_recorded_iterator() -> None:
    rng = random.Random(9)
    for sigma in (0.1, 1.5, 3.0):
        h = new_histogram()
        for _ in range(5000):
            h.record_value(max(1, min(int(rng.lognormvariate(9, sigma)), 3_600_000_000)),
                           rng.choice([1, 2]))
        walked = [(i.value_iterated_to, i.count_at_value_iterated_to)
                  for i in h.get_recorded_iterator()]
        assert list(zip(*recorded_us(h), strict=True)) == walked and len(walked) > 100
    assert recorded_us(new_histogram()) == ([], [])


@pytest.mark.slow
def test_percentiles_are_the_nearest_rank_of_the_samples() -> None:
    """Every percentile is the sample at the nearest rank, ceil(p/100 * n), as
    HdrHistogram's Java reference reads it, in its bucket's highest value
    (lowest for the 0th), from one sample to thousands, over the whole
    trackable range, 0 and 100 included; the rank of an exact product (99%
    of 1,000) is not pushed one up by floating-point noise."""
    rng = random.Random(3)
    ps = [0.0, 0.1, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0]
    for trial in range(200):
        h, samples = new_histogram(), []
        for _ in range(rng.choice([1, 2, 5, 100, 1000, 3000])):
            value = rng.choice([rng.expovariate(1 / 300), rng.expovariate(1 / 3e6),
                                rng.uniform(1, 3.6e9)])
            value, times = max(1, min(int(value), 3_600_000_000)), rng.choice([1, 1, 3])
            h.record_value(value, times)
            samples += [value] * times
        samples.sort()
        for p in ps:
            nearest = samples[max(1, math.ceil(round(p / 100 * len(samples), 6))) - 1]
            want = h.get_lowest_equivalent_value(nearest) if p == 0 else \
                h.get_highest_equivalent_value(nearest)
            assert percentile_us(h, p) == want, (trial, p)
        assert percentiles_us(h, ps) == {p: percentile_us(h, p) for p in ps}
    assert percentile_us(new_histogram(), 99.0) == 0


def test_p99_is_where_fewer_than_one_percent_lie_above() -> None:
    """1,060 samples, 11 of them (1.04%) at 200 ms: p99 is 200 ms, as the
    SLO language defines `p99 < T` (fewer than 1% take T or more). hdrh's
    Python port rounds the rank to nearest and reads 10 ms."""
    h = new_histogram()
    h.record_value(10_000, 1049)
    h.record_value(200_000, 11)
    assert h.get_value_at_percentile(99.0) < 11_000  # the port's reading
    assert 200_000 <= percentile_us(h, 99.0) < 201_000
    h.record_value(10_000, 40)  # 11 of 1,100 is 1.0%: p99 is the last fast one
    assert percentile_us(h, 99.0) < 11_000


def test_dropped_histograms_are_freed_without_the_cyclic_collector(tmp_path: Path) -> None:
    """hdrh's encoder points back at its histogram. A run tunes the collector to
    run rarely, so a cycle per rotated histogram (~190 KB) was memory that grew
    with run length. Every histogram loadkit makes, decodes, merges or reads
    back from a log is freed by its last user, with the collector off."""
    h = new_histogram()
    h.record_value(1000)
    log = tmp_path / "x.hlog"
    with open(log, "wb", buffering=0) as f:
        writer = HlogWriter(f, 0.0)
        writer.write("latency.measure.s.t", h, 0.0, 1.0)
        writer.flush()
    makers = [new_histogram, lambda: decode(encode(h)), lambda: merged([h, h]),
              lambda: next(read_hlog(str(log)))]
    gc.disable()
    try:
        for make in makers:
            ref = weakref.ref(made := make())
            del made
            assert ref() is None, make
    finally:
        gc.enable()


def test_add_into_is_hdrhs_add_without_its_checks() -> None:
    """The counts added as arrays give the same histogram as hdrh's add,
    decoded parts (as a rebuild adds them) and empty ones included."""
    rng = np.random.default_rng(3)
    parts = []
    for i in range(50):
        h = new_histogram()
        for v in rng.lognormal(10, 1, int(rng.integers(0, 200))):
            record_us(h, int(v))
        parts.append(decode(encode(h)) if i % 2 else h)
    by_hdrh, by_arrays = new_histogram(), new_histogram()
    for p in parts:
        by_hdrh.add(p)
        add_into(by_arrays, p)
    assert by_arrays.get_total_count() == by_hdrh.get_total_count() > 0
    assert by_arrays.get_min_value() == by_hdrh.get_min_value()
    assert by_arrays.get_max_value() == by_hdrh.get_max_value()
    assert by_arrays.get_mean_value() == by_hdrh.get_mean_value()
    for q in (50.0, 99.0, 99.9):
        assert percentile_us(by_arrays, q) == percentile_us(by_hdrh, q)


def test_each_hlog_line_gives_its_interval_max_in_us_as_its_histogram(tmp_path: Path) -> None:
    h = new_histogram()
    for us in (120, 1999, 4567):
        h.record_value(us)
    log = tmp_path / "x.hlog"
    with open(log, "wb", buffering=0) as f:
        writer = HlogWriter(f, 0.0)
        writer.write("latency.measure.s.t", h, 0.0, 1.0)
        writer.flush()
    line = log.read_text().splitlines()[-1]
    assert line.startswith("Tag=latency.measure.s.t,")
    assert float(line.split(",")[3]) == h.get_max_value() == next(
        read_hlog(str(log))).get_max_value()
