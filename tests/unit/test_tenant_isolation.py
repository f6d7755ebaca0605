"""Tenant isolation (loadkit.slo.isolation): a tenant's latency in the phases
where another tenant spikes, over its latency in quiet phases; its own spikes
are not counted against the others."""

from __future__ import annotations

import pytest

from loadkit.record.histogram import HdrHistogram, new_histogram, record_us
from loadkit.slo.isolation import isolation


def test_isolation_ignores_the_victims_own_spikes() -> None:
    def h(ms: int) -> HdrHistogram:
        out = new_histogram()
        for _ in range(100):
            record_us(out, ms * 1000)
        return out
    rates = {"a": {"q": 5, "a-up": 50, "b-up": 5}, "b": {"q": 5, "a-up": 5, "b-up": 50}}
    lat = {("a", "q"): h(10), ("a", "a-up"): h(99), ("a", "b-up"): h(20),
           ("b", "q"): h(10), ("b", "a-up"): h(30), ("b", "b-up"): h(99)}
    iso = isolation(rates, lat)
    assert iso["a"].quiet_phases == ["q"] and iso["a"].spike_phases == ["b-up"]
    assert iso["a"].ratio == pytest.approx(2.0, rel=0.01)
    assert iso["b"].ratio == pytest.approx(3.0, rel=0.01)
