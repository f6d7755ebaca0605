"""The HDR histogram helpers: exact means fast, and no reference cycles."""

from __future__ import annotations

import gc
import random
import weakref

from loadkit.record.histogram import decode, encode, mean_us, merged, new_histogram
from loadkit.record.hlog import HlogWriter, read_hlog


def test_mean_equals_hdrh_mean_exactly():
    rng = random.Random(5)
    for sigma in (0.1, 1.0, 2.5):
        h = new_histogram()
        for _ in range(3000):
            h.record_value(max(1, int(rng.lognormvariate(9, sigma))))
        assert mean_us(h) == h.get_mean_value()
        assert mean_us(decode(encode(h))) == h.get_mean_value()
    assert mean_us(new_histogram()) == 0.0


def test_dropped_histograms_are_freed_without_the_cyclic_collector(tmp_path):
    """hdrh's encoder points back at its histogram. A run tunes the collector to
    run rarely, so a cycle per rotated histogram (~190 KB) was memory that grew
    with run length. Every histogram loadkit makes, decodes, merges or reads
    back from a log is freed by its last user, with the collector off."""
    h = new_histogram()
    h.record_value(1000)
    log = tmp_path / "x.hlog"
    with open(log, "w", encoding="ascii") as f:
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
