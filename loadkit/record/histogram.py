"""HDR histograms in integer microseconds (1 µs .. 1 h, 3 significant digits).

Merged, never averaged. Summaries are reported in milliseconds.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour
DIGITS = 3
SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_us(h: HdrHistogram, value_us: int) -> None:
    """Record one value, clamped into the trackable range (never dropped)."""
    h.record_value(min(max(value_us, LOWEST_US), HIGHEST_US))


def merged(histograms) -> HdrHistogram:
    out = new_histogram()
    for h in histograms:
        out.add(h)
    return out


def summary_ms(h: HdrHistogram) -> dict[str, float | int]:
    """count, p50 .. p99.9, max and mean in milliseconds."""
    count = h.get_total_count()
    if count == 0:
        return {"count": 0}
    values = h.get_percentile_to_value_dict(list(SUMMARY_PERCENTILES))
    out: dict[str, float | int] = {"count": count}
    for p in SUMMARY_PERCENTILES:
        out[f"p{p:g}"] = values[p] / 1000.0
    out["max"] = h.get_max_value() / 1000.0
    out["mean"] = round(h.get_mean_value() / 1000.0, 3)
    return out


def encode(h: HdrHistogram) -> str:
    return h.encode().decode("ascii")


def decode(payload: str) -> HdrHistogram:
    out = new_histogram()
    out.decode_and_add(payload)
    return out
