"""`latency.hlog`: the HdrHistogram interval-log format, one `Tag=` per series.

Written with hdrh's HistogramLogWriter as the run goes (one line per series
per interval), so a killed run keeps what it measured. hdrh's writer has no
tag support, so the `Tag=...,` prefix is written just before each line; its
reader parses tags. Tags are `metric.phase.scenario.tenant` (no commas or
spaces, as the format requires).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from hdrh.log import HistogramLogReader, HistogramLogWriter

from loadkit.record.histogram import HdrHistogram, acyclic, new_histogram
from loadkit.result.model import SeriesTag


def tag_for(metric: str, phase: str, scenario: str, tenant: str) -> str:
    return str(SeriesTag.of(metric, phase, scenario, tenant))


class HlogWriter:
    def __init__(self, out: IO[str], start_epoch_s: float):
        self._out = out
        self._writer = HistogramLogWriter(out)
        self._writer.output_log_format_version()
        # hdrh's output_start_time is broken in 0.10; write the same line by hand.
        out.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        self._writer.output_legend()

    def write(self, tag: str, h: HdrHistogram, start_s: float, end_s: float) -> None:
        """One interval of one series; times relative to the run's start."""
        self._out.write(f"Tag={tag},")
        # Interval_Max in µs, as the histograms: hdrh floors it to the ratio's
        # unit (a ratio of 1000 wrote whole ms, up to 0.99 ms under the max).
        self._writer.output_interval_histogram(h, start_s, end_s, max_value_unit_ratio=1.0)

    def flush(self) -> None:
        self._out.flush()


def read_hlog(path: str) -> Iterator[HdrHistogram]:
    """Every interval histogram of a log, each with its tag set."""
    reader = HistogramLogReader(path, new_histogram())
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            yield acyclic(h)
    finally:
        reader.close()
