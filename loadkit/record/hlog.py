"""`latency.hlog`: the HdrHistogram interval-log format, one `Tag=` per series.

Written with hdrh's HistogramLogWriter as the run goes (one line per series
per interval), so a killed run keeps what it measured. hdrh's writer has no
tag support, so the `Tag=...,` prefix is written just before each line; its
reader parses tags. Tags are `metric.phase.scenario.tenant` (no commas or
spaces, as the format requires). Each interval's lines are formatted in
memory and written whole at `flush`; a write that fails (a full disk) sets
`error` and ends the log there, as the journal does: the run goes on, its
figures whole in memory.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import IO

from hdrh.log import HistogramLogReader, HistogramLogWriter

from loadkit.record.histogram import HdrHistogram, acyclic, new_histogram
from loadkit.result.model import SeriesTag


def tag_for(metric: str, phase: str, scenario: str, tenant: str) -> str:
    return str(SeriesTag.of(metric, phase, scenario, tenant))


class HlogWriter:
    """Writes to `out`, a file opened unbuffered in binary (`open(p, "wb",
    buffering=0)`), so a failed write leaves nothing pending to fail again."""

    def __init__(self, out: IO[bytes], start_epoch_s: float):
        if isinstance(out, (io.TextIOBase, io.BufferedIOBase)):
            raise TypeError("HlogWriter writes to an unbuffered binary file: "
                            "open(path, 'wb', buffering=0)")
        self._out = out
        self._lines = io.StringIO()
        self._writer = HistogramLogWriter(self._lines)
        self.error: str | None = None  # set when a write failed; nothing is written after
        self._writer.output_log_format_version()
        # hdrh's output_start_time is broken in 0.10; write the same line by hand.
        self._lines.write(f"#[StartTime: {start_epoch_s:.3f} (seconds since epoch)]\n")
        self._writer.output_legend()
        self.flush()  # the header now: a run that dies before its first interval has it

    def write(self, tag: str, h: HdrHistogram, start_s: float, end_s: float) -> None:
        """One interval of one series; times relative to the run's start."""
        if self.error is not None:
            return
        self._lines.write(f"Tag={tag},")
        # Interval_Max in µs, as the histograms: hdrh floors it to the ratio's
        # unit (a ratio of 1000 wrote whole ms, up to 0.99 ms under the max).
        self._writer.output_interval_histogram(h, start_s, end_s, max_value_unit_ratio=1.0)

    def flush(self) -> None:
        data = memoryview(self._lines.getvalue().encode("ascii"))
        self._lines.seek(0)
        self._lines.truncate()
        try:
            while data and self.error is None:
                written = self._out.write(data)
                if not written:
                    raise OSError("the file took no bytes")
                data = data[written:]
        except OSError as exc:
            self.error = f"{getattr(self._out, 'name', 'latency.hlog')}: {exc.strerror or exc}"


def read_hlog(path: str) -> Iterator[HdrHistogram]:
    """Every interval histogram of a log, each with its tag set."""
    reader = HistogramLogReader(path, new_histogram())
    try:
        while (h := reader.get_next_interval_histogram()) is not None:
            yield acyclic(h)
    finally:
        reader.close()
