"""The exporter's histogram conversion (loadkit/run/exporter.py): an
HdrHistogram's counts into fixed Prometheus buckets, exact to the
histogram's resolution, with hdrh's own mean."""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np

from loadkit.record.histogram import HIGHEST_US, mean_us, new_histogram, record_us
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.result import parse_run
from loadkit.result.model import PhaseInfo
from loadkit.run.exporter import BUCKETS_S, LiveMetrics, buckets_of
from loadkit.slo.scopes import Phases
from support.synthetic_run import synthetic_day


def test_buckets_match_the_recorded_values_to_the_histograms_resolution() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(9, 2.5)) for _ in range(20_000)]
    h = new_histogram()
    for v in values:
        record_us(h, v)
    per_bucket, sum_us = buckets_of(h)
    assert len(per_bucket) == len(BUCKETS_S) + 1 and per_bucket.sum() == len(values)
    cumulative = np.cumsum(per_bucket)[:-1]
    clamped = sorted(min(max(v, 1), HIGHEST_US) for v in values)
    for bound, got in zip(BUCKETS_S, cumulative.tolist()):
        below = sum(1 for v in clamped if v <= bound * 1e6)
        within = sum(1 for v in clamped if v <= bound * 1e6 * 1.001)  # hdrh's 3 digits
        assert below <= got <= within, (bound, below, got, within)
    assert sum_us / len(values) == mean_us(h)


def test_listener_publishes_counts_and_buckets_per_interval() -> None:
    rec = Recorder(0)
    metrics = LiveMetrics()
    metrics.attach(rec, phases=Phases([PhaseInfo(name="p", start_s=0, duration_s=10,
                                                 warmup=False)]),
                   objectives=[], judge=None, strict=False, in_flight=lambda: 3, info={},
                   planned_s=10, lateness_bound_s=0.01)
    for second in range(3):
        t = second * 1_000_000_000
        for tenant in ("a", "b"):
            events = [t + 40_000_000 + k * 8_000_000 for k in range(8)]
            rec.record(RequestRecord(tenant, "chat", "p", t, t + 1000, end=events[-1],
                                     first=events[0], events=events, output_tokens=8))
        rec.drop("p", "chat", "a")
        rec.rotate(t + 1_000_000_000)
    samples = {(m.name, tuple(sorted(s.labels.items()))): s.value
               for m in metrics.collect() for s in m.samples}
    key = (("outcome", "completed"), ("phase", "p"), ("scenario", "chat"), ("tenant", "a"))
    assert samples[("loadkit_requests", key)] == 3  # family name; the sample is _total
    assert samples[("loadkit_requests", (("outcome", "dropped"),) + key[1:])] == 3
    itl = Counter({lab: v for (name, lab), v in samples.items()
                   if name == "loadkit_itl_seconds" and ("le", "+Inf") in lab})
    assert sorted(itl.values()) == [21, 21]  # 7 gaps a request, 3 requests, per tenant
    assert samples[("loadkit_in_flight", ())] == 3
    assert len(metrics.update_ns) == 3


def test_requests_an_interrupt_cancelled_are_published_once_judged() -> None:
    """run.json counts.unfinished (cancelled unjudged by Ctrl-C) reach the
    exporter with the verdict: its totals equal `counts` after an interrupt
    too (they left those out: 305 against 305 + 29, an audit)."""
    metrics = LiveMetrics()

    def interrupted() -> float:
        return next(s.value for m in metrics.collect() for s in m.samples
                    if s.name == "loadkit_requests_interrupted_total")

    assert interrupted() == 0
    result = parse_run(json.loads(json.dumps(synthetic_day(intervals=60))))
    metrics.finish(result.model_copy(update={"counts": result.counts.model_copy(
        update={"unfinished": 29})}))
    assert interrupted() == 29
