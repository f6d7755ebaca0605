"""`journal.jsonl`: the run's counters, appended and flushed every interval.

With `latency.hlog` (the histograms, written by the recorder as the run
goes) it makes the run folder usable at every interval: `loadkit report DIR`
on a folder left by `kill -9`, an OOM kill or a power cut rebuilds run.json
and the reports from the two (loadkit.run.recover), losing at most the
interval in progress.

One JSON object per line:

- `{"t": "header", ...}` first, before the run's zero: run id, workload
  (name, path, sha256, seed, spec), target, versions, phases, interval, the
  objectives, what the verdict needs that only the run knows (declared
  rates, lateness bound, flags), and the writer's pid.
- `{"t": "interval", ...}` at every rotation of the recorder: the interval's
  summary (`iv`: the recorder's Interval), how many series it wrote to the
  hlog (`series`), the counters that moved in it by (phase, scenario,
  tenant) (`completed`, `errors` by kind, `dropped`, `good`, `tokens`; and
  `served`, by the phase each request ended in),
  arrivals scheduled by (phase, tenant), token sources, new error examples
  and new telemetry points. Deltas, so a line is O(keys that moved), and
  summing the lines gives the totals.
- `{"t": "note", "at_s", "text"}` an operator's note from the live view
  (`--ui`), as it is taken (from the view's server thread: one os.write of
  one line, which O_APPEND keeps whole beside the recorder's).
- `{"t": "end", ...}` once the schedule and its drain are over.

Costs on the event loop, per interval: one pass over the recorder's counters
(O(keys); no histogram is encoded, they are in the hlog: only their counts
are read, to say how many series the interval wrote), one json.dumps and
one os.write of the line (O_APPEND, unbuffered: the bytes are in the page
cache when write returns, so a killed process loses nothing written). The
journal keeps only the last value of each counter (memory flat in run
length). Durability against a power cut is a background thread's: after each
line it fdatasyncs the hlog and the journal, at most once a second, off the
event loop (the GIL is released during the call).

A reader (`LineTail`, `read_journal`) takes complete lines only: a partial
last line (the process died inside a write) waits or is dropped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from loadkit.record.recorder import Interval, Recorder

_IV_FIELDS = [f.name for f in dataclasses.fields(Interval)]
# Recorder counters a rebuilt run restores as they are (no live SLO reads them).
EXTRA_COUNTERS = ("prompt_tokens", "cached_tokens", "prompt_asked", "prompt_matched",
                  "sessions", "finish_reasons", "stream_notes", "reasoning_tokens",
                  "expected_cached", "abandoned", "tokens_read",
                  "tokens_received", "retried", "sent_bytes", "served")

JOURNAL_NAME = "journal.jsonl"
HLOG_NAME = "latency.hlog"
# 2: `served` (requests by the phase they ended in). A format-1 journal is
# read with them counted in the phase they were sent for, as that loadkit did.
FORMAT = 2
SYNC_EVERY_S = 1.0


class Journal:
    """An append-only JSON-lines file; `append` is one os.write of one line."""

    def __init__(self, path: Path, header: Mapping[str, Any], sync: Iterable[IO] = ()):
        self.path = path
        self.error: str | None = None  # set when a write failed; the run goes on without it
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                                       0o644)
        self._syncer = _Syncer([f.fileno() for f in sync] + [self._fd])
        self.append({"t": "header", "journal": FORMAT, **header})
        self._syncer.start()

    def append(self, record: Mapping[str, Any]) -> None:
        if self._fd is None:
            return
        data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError as exc:  # a full disk must not stop the run: it loses the journal
            self.error = f"{self.path}: {exc.strerror or exc}"
            self.close()
            return
        self._syncer.poke()

    def end(self, **fields: Any) -> None:
        """The schedule and its drain are over; what follows is the result."""
        self.append({"t": "end", "wall": round(time.time(), 3), **fields})

    def close(self) -> None:
        """Once the run's loop has ended (or a write failed): a last sync, off the loop."""
        self._syncer.stop()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                getattr(os, "fdatasync", os.fsync)(fd)
            os.close(fd)

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _Syncer(threading.Thread):
    """fdatasync the files after a line was appended, at most once a second,
    on its own thread: a disk flush can take tens of milliseconds, which the
    event loop must never wait for. kill -9 and OOM kills lose nothing
    written without it; this bounds what a power cut loses."""

    def __init__(self, fds: list[int]) -> None:
        super().__init__(name="loadkit-journal-sync", daemon=True)
        self._fds = fds
        self._wake = threading.Event()
        self._halt = threading.Event()

    def poke(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._halt.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout=10)

    def run(self) -> None:
        sync = getattr(os, "fdatasync", os.fsync)
        while not self._halt.is_set():
            self._wake.wait()
            self._wake.clear()
            for fd in self._fds:
                if self._halt.is_set():
                    return
                with contextlib.suppress(OSError):
                    sync(fd)
            self._halt.wait(SYNC_EVERY_S)


class IntervalJournal:
    """A recorder listener: one journal line per interval.

    `scheduled` is the engine's arrivals by (phase, tenant); `telemetry`, a
    telemetry session whose samplers' new points go into each line."""

    def __init__(self, journal: Journal, recorder: Recorder, scheduled: Counter,
                 telemetry: Any = None):
        self.journal, self.recorder, self.scheduled = journal, recorder, scheduled
        self.telemetry = _TelemetryTail(telemetry, recorder.start_ns) if telemetry else None
        self._seen: dict[str, dict] = {}  # counter name -> key -> value last written
        self._examples: dict[str, int] = {}
        self._n = 0

    def __call__(self, iv: Interval, hists: Mapping[Any, Any], _keyed: object = None) -> None:
        r = self.recorder
        line: dict[str, Any] = {"t": "interval", "n": self._n, "wall": round(time.time(), 3),
                                "iv": {k: getattr(iv, k) for k in _IV_FIELDS},
                                "series": sum(1 for h in hists.values() if h.get_total_count())}
        for name, counter in (("completed", r.completed), ("errors", r.errors),
                              ("dropped", r.dropped), ("good", r.good),
                              ("tokens", r.output_tokens), ("scheduled", self.scheduled),
                              *((name, getattr(r, name)) for name in EXTRA_COUNTERS)):
            if moved := self._moved(name, counter):
                line[name] = [[*key, n] for key, n in moved]
        if sources := self._moved("sources", r.token_sources):
            line["sources"] = dict(sources)
        if itl := self._moved("itl_sources", r.itl_sources):
            line["itl_sources"] = dict(itl)
        examples = {}
        for kind, messages in r.error_examples.items():
            if len(messages) > (seen := self._examples.get(kind, 0)):
                examples[kind] = messages[seen:]
                self._examples[kind] = len(messages)
        if examples:
            line["examples"] = examples
        if self.telemetry is not None and (tele := self.telemetry.new()):
            line["telemetry"] = tele
        self._n += 1
        self.journal.append(line)

    def _moved(self, name: str, counter: Mapping[Any, int]) -> list[tuple[Any, int]]:
        seen = self._seen.setdefault(name, {})
        out = []
        # A copy first (one C call, atomic under the GIL): `scheduled` grows on
        # the event loop while this runs on the recorder's thread.
        for key, n in dict(counter).items():
            if n != (last := seen.get(key, 0)):
                seen[key] = n
                out.append((key, n - last))
        return out


class _TelemetryTail:
    """New points of every telemetry series since the last interval.

    The samplers append to their stores on their own threads (one writer per
    store, `array.append` under the GIL); this reads lengths and slices, so
    it never waits for them. `points` holds [id, [[t, v], ...]] per series
    that moved, times in seconds from the run's zero; a series' key and
    description go once, in `new` ({id: {...}}), with its first points.
    Sources' states go when they change (`sources`), their sample counts
    when those change (`counts`: [[samples, errors], ...])."""

    def __init__(self, session: Any, start_ns: int) -> None:
        self.session, self.zero = session, start_ns / 1e9
        self._ids: dict[str, int] = {}
        self._lengths: list[int] = []
        self._states: list[tuple] = []
        self._counts: list[list[int]] = []
        self._gpus: list[dict] = []
        self.failed: str | None = None

    def new(self) -> dict[str, Any]:
        if self.failed:
            return {}
        try:
            return self._new()
        except Exception as exc:  # noqa: BLE001 - telemetry never stops a run
            self.failed = f"{type(exc).__name__}: {exc}"
            return {"failed": self.failed}

    def _new(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        points: list[list] = []
        new: dict[int, dict] = {}
        gpus: list[dict] = []
        for source in self.session.sources:
            gpus += [{**g, "source": source.kind} for g in source.gpus]
            for key, s in list(source.store.series.items()):  # list(): one step, under the GIL
                i = self._ids.get(key)
                if i is None:
                    i = self._ids[key] = len(self._lengths)
                    self._lengths.append(0)
                    new[i] = {"key": key, "metric": s["metric"], "labels": s["labels"],
                              "unit": s["unit"], "kind": s["kind"], "source": s["source"]}
                t, v = s["t"], s["v"]
                n, seen = min(len(t), len(v)), self._lengths[i]
                if n > seen:
                    points.append([i, [[round(t[j] - self.zero, 3), v[j]]
                                       for j in range(seen, n)]])
                    self._lengths[i] = n
        if new:
            out["new"] = new
        if points:
            out["points"] = points
        described = [s.describe() for s in self.session.sources]
        states = [tuple((k, v) for k, v in d.items() if k not in ("samples", "errors"))
                  for d in described]
        counts = [[d.get("samples", 0), d.get("errors", 0)] for d in described]
        if states != self._states:
            out["sources"], self._states = described, states
        elif counts != self._counts:
            out["counts"] = counts
        self._counts = counts
        if gpus != self._gpus:
            out["gpus"] = self._gpus = gpus
        return out


class LineTail:
    """The complete lines appended to a file since the last call; a partial
    last line (its writer died inside a write, or is writing it now) waits."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset = path, 0

    def lines(self, max_bytes: int = -1) -> list[bytes]:
        """Complete lines from where the last call stopped; with `max_bytes`,
        those within about that many bytes (a longer line whole), so a
        reader of a day's journal holds one chunk at a time."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(max_bytes)
                if 0 <= max_bytes == len(data) and b"\n" not in data:
                    data += f.readline()  # one line longer than the chunk
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        return data[:end].split(b"\n")


def parse_lines(lines: Iterable[bytes]) -> tuple[list[dict], str | None]:
    """Journal records of complete lines, up to the first damaged one; and
    why reading stopped there (None: every line read)."""
    out: list[dict] = []
    for i, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "t" not in record:
            return out, f"line {i + 1} is damaged"
        out.append(record)
    return out, None


def read_journal(path: Path, limit: int | None = None) -> tuple[list[dict], str | None]:
    """The records of a journal (see parse_lines); the first `limit` only, if given."""
    if limit is not None:
        try:
            with open(path, "rb") as f:
                lines = [line for _ in range(limit) if (line := f.readline()).endswith(b"\n")]
        except FileNotFoundError:
            return [], None
        return parse_lines(lines)
    return parse_lines(LineTail(path).lines())
