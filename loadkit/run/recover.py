"""Rebuild a run's result from journal.jsonl and latency.hlog.

A run that died (kill -9, the OOM killer, a power cut) leaves no run.json,
but its journal holds every closed interval's counters and its hlog every
interval's histograms (loadkit.record.journal). `Rebuild` reads the two as
far as they go and presents them as a Recorder, so the result is built by
the same code as a finished run's: `Measured` for the scoped figures, the
windowed and abort SLOs replayed interval by interval through `LiveJudge`,
`evaluate_all` for the verdicts, `telemetry_section` for the telemetry. It
is marked incomplete (`RunResult.incomplete`, untrusted: exit 3).

Reading is incremental: `update()` takes only what was appended since the
last call, so the live report (loadkit.run.live_report) refreshes a long run in
time proportional to the new intervals, not to the run.

An interval counts once its journal line is complete and the hlog holds all
of its series (the line says how many): the recorder writes and flushes the
hlog before the journal, so after a kill only the interval in progress is
lost.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from array import array
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loadkit.errors import InputError
from loadkit.record.histogram import HdrHistogram, acyclic, add_into, decode, new_histogram
from loadkit.record.journal import (
    EXTRA_COUNTERS,
    FORMAT,
    HLOG_NAME,
    JOURNAL_NAME,
    LineTail,
    parse_lines,
)
from loadkit.record.recorder import MAX_EXAMPLES, Interval, Recorder, SeriesKey
from loadkit.result.model import (
    Incomplete,
    Note,
    PhaseInfo,
    RunResult,
    SeriesTag,
    Telemetry,
    safe_part,
)
from loadkit.run.assemble import RunFacts, assemble
from loadkit.slo.live import LiveJudge
from loadkit.slo.scopes import Phases
from loadkit.telemetry.derive import telemetry_section
from loadkit.workload.slo_spec import Objective

_IV_FIELDS = {f.name for f in dataclasses.fields(Interval)}
_SAME_S = 5e-4  # the hlog writes times to the microsecond: same interval within this
CHUNK = 4 * 2**20  # bytes of journal (or hlog) read at a time


@dataclasses.dataclass
class _Entry:
    """One hlog line: a series' histogram for one interval (decoded on use)."""

    start_s: float
    key: SeriesKey | None
    payload: str


def has_journal(run_dir: Path) -> bool:
    return (run_dir / JOURNAL_NAME).is_file()


class Rebuild:
    """A run folder's journal and hlog, read so far, as a recorder."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir
        self._journal = LineTail(run_dir / JOURNAL_NAME)
        self._hlog = LineTail(run_dir / HLOG_NAME)
        self.header: dict[str, Any] | None = None
        self.recorder = Recorder(start_ns=0)
        # The matching of departures with the server's aborts is not journaled.
        self.recorder.reclaim.unmeasured = ("not rebuilt: the journal does not keep the "
                                            "matching with the server's aborts")
        self.scheduled: Counter = Counter()  # (phase, tenant)
        self.ended: dict[str, Any] | None = None  # the journal's end line
        self.notes: list[Note] = []
        self.damaged: str | None = None  # why reading stopped before the end of the journal
        self.hlog_damaged = 0  # histogram lines of the hlog that could not be read
        self.last_wall: float | None = None
        self._records: deque[dict] = deque()  # interval lines waiting for their histograms
        self._entries: deque[_Entry] = deque()  # hlog lines not yet matched to an interval
        self._names: dict[str, str] = {}  # a name as tags write it -> as written
        self._tags: dict[str, SeriesKey | None] = {}
        self._lines = 0
        self._telemetry: dict[str, Any] = {"series": {}, "sources": [], "gpus": []}
        self._series_keys: dict[int, str] = {}
        self.judge: LiveJudge | None = None
        self.objectives: list[Objective] = []
        self.phases: list[PhaseInfo] = []
        self._unserved = False
        self._cpu = [0.0, 0.0]  # cpu-seconds and seconds over intervals that have a figure
        self._steal = [0.0, 0.0]

    @property
    def intervals(self) -> int:
        return self.recorder.intervals.count

    def update(self, progress: Callable[[int], None] | None = None) -> int:
        """Read what was appended since the last call, CHUNK bytes at a time
        (a day's journal never whole in memory); the number of new intervals
        taken in. `progress` hears the journal's bytes read so far. InputError
        when the folder has no journal or its first line is not a loadkit
        journal header."""
        taken = 0
        while not self.damaged:
            lines = self._journal.lines(CHUNK)
            if self.header is None and not lines and not self._journal.path.exists():
                raise InputError(f"{self.dir}: no run.json and no {JOURNAL_NAME} here "
                                 "(is it a loadkit output folder?)")
            try:
                self._read(lines)
                if self.header is None:
                    if self.damaged or self._journal.offset:
                        raise InputError(f"{self._journal.path} is not a loadkit journal")
                    break
                taken += self._match()
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                # Valid JSON, but not a record this loadkit wrote (an edited file).
                raise InputError(f"{self._journal.path}: a record after line "
                                 f"{self._lines - len(lines)} is not one this loadkit wrote "
                                 f"({type(exc).__name__}: {exc})") from None
            if progress is not None:
                progress(self._journal.offset)
            if not lines:
                break
        return taken

    def _read(self, lines: list[bytes]) -> None:
        records, damaged = parse_lines(lines)
        if damaged:
            self.damaged = f"{JOURNAL_NAME} is damaged after line {self._lines + len(records)}"
        self._lines += len(records)
        for record in records:
            kind = record.get("t")
            if self.header is None:
                if kind != "header":
                    raise InputError(f"{self._journal.path} is not a loadkit journal "
                                     "(no header line)")
                self._unserved = record.get("journal") == 1  # before `served` (journal.py)
                if record.get("journal") not in (1, FORMAT):
                    raise InputError(f"{self._journal.path} has journal format "
                                     f"{record.get('journal')!r}; this loadkit reads {FORMAT}")
                try:
                    self._start(record)
                except (KeyError, TypeError, ValueError) as exc:  # ValidationError included
                    raise InputError(f"{self._journal.path}: its header is not one this "
                                     f"loadkit wrote ({type(exc).__name__}: {exc})") from None
            elif kind == "interval":
                self._records.append(record)
            elif kind == "end":
                self.ended = record
            elif kind == "note":  # an operator's note from the live view
                self.notes.append(Note(at_s=record["at_s"], text=record["text"]))

    def _match(self) -> int:
        """Apply the waiting intervals whose histograms the hlog holds,
        reading it a chunk at a time as they need."""
        taken = 0
        while self._records:
            hists = self._take(self._records[0])
            if hists is None:
                more = self._hlog.lines(CHUNK)
                if not more:
                    break  # the rest is not written yet (a live run), or lost
                self._entries.extend(self._parse_hlog(more))
                continue
            self._apply(self._records.popleft(), hists)
            taken += 1
        return taken

    def _start(self, header: dict[str, Any]) -> None:
        self.header = header
        self.phases = [PhaseInfo.model_validate(p) for p in header["phases"]]
        self.objectives = [Objective.model_validate(o) for o in header["objectives"]]
        names = header["names"]
        for name in [*names["phases"], *names["scenarios"], *names["tenants"]]:
            self._names.setdefault(safe_part(name), name)
        # Replayed, the judge decides what the run decided, at the same interval:
        # a breach of an abort SLO, and the verdict of a stop_when_decided run.
        self.judge = LiveJudge(self.objectives, Phases(self.phases), header["strict"],
                               on_breach=lambda _slo, _at: None,
                               interval_s=header["workload"]["interval_s"],
                               on_decided=(lambda _d: None)
                               if header["workload"]["spec"].get("stop_when_decided") else None)
        tele = header.get("telemetry") or {}
        self._telemetry.update(interval_s=tele.get("interval_s"),
                               price_per_gpu_hour=tele.get("price_per_gpu_hour"),
                               gpus_declared=tele.get("gpus_declared"))

    def _key(self, tag: str) -> SeriesKey | None:
        if tag not in self._tags:
            key = SeriesTag.parse(tag)
            self._tags[tag] = None if key is None else (
                key.metric, *(self._names.get(p, p) for p in key[1:]))  # type: ignore[assignment]
        return self._tags[tag]

    def _parse_hlog(self, lines: list[bytes]) -> list[_Entry]:
        out = []
        for raw in lines:
            if not raw.startswith(b"Tag="):
                continue  # comments, the legend
            try:
                tag, start, _length, _max, payload = raw.decode("ascii").split(",")
                out.append(_Entry(float(start), self._key(tag[4:]), payload))
            except ValueError:
                continue  # a damaged line: its interval will lack a series and stop there
        return out

    def _take(self, record: dict[str, Any]) -> dict[SeriesKey, HdrHistogram] | None:
        """The interval's histograms, when the hlog holds all of them."""
        start = record["iv"]["start_s"]
        entries = self._entries
        while entries and entries[0].start_s < start - _SAME_S:
            entries.popleft()  # an interval the journal never got to: not counted
        n = 0
        while n < len(entries) and abs(entries[n].start_s - start) <= _SAME_S:
            n += 1
        if n < record.get("series", 0):
            if n == len(entries):
                return None  # the rest is not read yet (or not written)
            # A later interval's lines follow: this one's missing are damaged.
            self.hlog_damaged += record["series"] - n
        hists: dict[SeriesKey, HdrHistogram] = {}
        for _ in range(n):
            e = entries.popleft()
            if e.key is None:
                continue
            try:
                h = decode(e.payload)
            except Exception:  # noqa: BLE001 - a damaged payload loses one series
                self.hlog_damaged += 1
                continue
            if e.key in hists:
                add_into(hists[e.key], h)
            else:
                hists[e.key] = h
        return hists

    def _apply(self, record: dict[str, Any], hists: dict[SeriesKey, HdrHistogram]) -> None:
        r = self.recorder
        for key, h in hists.items():
            total = r.cumulative.get(key)
            if total is None:
                total = r.cumulative[key] = new_histogram()
            add_into(total, h)
        keyed: Counter = Counter()
        for name, counter, what in (("completed", r.completed, "completed"),
                                    ("dropped", r.dropped, "dropped"), ("good", r.good, "good"),
                                    ("tokens", r.output_tokens, "tokens")):
            for *key, n in record.get(name, ()):
                counter[tuple(key)] += n
                keyed[(what, *key)] += n
                if self._unserved and what != "dropped":  # as the loadkit that wrote it
                    r.served[(what, *key)] += n
                    keyed[(f"served_{what}", *key)] += n
        for kind, *key, n in record.get("errors", ()):
            r.errors[(kind, *key)] += n
            keyed[("errors", *key)] += n
        for name in EXTRA_COUNTERS:
            extra: Counter = getattr(r, name)
            for *key, n in record.get(name, ()):
                extra[tuple(key)] += n
        for what, *key, n in record.get("served", ()):
            keyed[(f"served_{what}", *key)] += n
        for phase, tenant, n in record.get("scheduled", ()):
            self.scheduled[(phase, tenant)] += n
        r.token_sources.update(record.get("sources", {}))
        r.itl_sources.update(record.get("itl_sources", {}))
        for kind, messages in record.get("examples", {}).items():
            kept = r.error_examples[kind]
            kept += messages[:MAX_EXAMPLES - len(kept)]
        iv = Interval(**{k: v for k, v in record["iv"].items() if k in _IV_FIELDS})
        width = max(iv.end_s - iv.start_s, 0.0)
        for acc, value in ((self._cpu, iv.cpu_percent), (self._steal, iv.steal_percent)):
            if value is not None:
                acc[0] += value * width
                acc[1] += width
        r.intervals.append(iv)
        if self.judge:
            self.judge.on_interval(iv, hists, keyed)
        self._add_telemetry(record.get("telemetry"))
        self.last_wall = record.get("wall", self.last_wall)

    def _add_telemetry(self, tele: dict[str, Any] | None) -> None:
        if not tele:
            return
        data, keys = self._telemetry, self._series_keys
        for i, entry in tele.get("new", {}).items():
            keys[int(i)] = key = entry["key"]
            # Times and values as arrays of doubles: a day's samples in 16
            # bytes each, not a list of pairs.
            data["series"][key] = {**{k: v for k, v in entry.items() if k != "key"},
                                   "t": array("d"), "v": array("d")}
        for i, points in tele.get("points", ()):
            if (key := keys.get(i)) is not None:
                series = data["series"][key]
                series["t"].extend(t for t, _v in points)
                series["v"].extend(v for _t, v in points)
        if "sources" in tele:
            data["sources"] = tele["sources"]
        for source, (samples, errors) in zip(data["sources"], tele.get("counts", ())):
            source.update(samples=samples, errors=errors)
        if "gpus" in tele:
            data["gpus"] = tele["gpus"]

    def result(self, in_progress: bool = False) -> RunResult:
        """The run as recorded so far, marked incomplete (untrusted)."""
        h = self.header
        if h is None:
            raise InputError(f"{self.dir / JOURNAL_NAME} has no header line")
        recorder, phases = self.recorder, self.phases
        recorded_s = recorder.intervals[-1].end_s if recorder.intervals else 0.0
        # Clients that left were settled too: they are no one's unfinished.
        settled = sum(recorder.completed.values()) + sum(recorder.errors.values()) \
            + sum(recorder.dropped.values()) + sum(recorder.abandoned.values())
        finished = dt.datetime.fromtimestamp(self.last_wall, dt.UTC) if self.last_wall \
            else dt.datetime.now(dt.UTC)
        result = assemble(
            RunFacts.model_validate(h), finished_at=finished.isoformat(timespec="seconds"),
            recorder=recorder, scheduled=self.scheduled,
            unfinished=max(0, sum(self.scheduled.values()) - settled),
            objectives=self.objectives,
            # A live report judges a copy: results() closes the window still open.
            judge=_copy(self.judge) if in_progress else self.judge,
            telemetry=self._telemetry_section(phases),
            generator={"cpu_percent": round(self._cpu[0] / self._cpu[1], 1)
                       if self._cpu[1] else None,
                       "steal_percent": round(self._steal[0] / self._steal[1], 2)
                       if self._steal[1] else None},
            ended_s=recorded_s,
            incomplete=self._incomplete(in_progress, recorded_s,
                                        sum(p.duration_s for p in phases)))
        return result.model_copy(update={"notes": list(self.notes)}) if self.notes else result

    def _incomplete(self, in_progress: bool, recorded_s: float, planned_s: float) -> Incomplete:
        at = f"{round(recorded_s, 1):g} s of {round(planned_s, 1):g} s"
        if in_progress:
            reason = (f"in progress: {at} recorded; a live report rebuilt from the journal "
                      "while the run goes (the verdict may still change)")
        elif self.ended is not None:
            reason = (f"incomplete: the run ended at {at} but died before writing its "
                      "results; rebuilt from the journal")
        else:
            reason = (f"incomplete: the run was killed at {at}; rebuilt from the journal "
                      "(the last interval may be lost)")
        if self.damaged:
            reason += f"; {self.damaged}, read up to there"
        if self.hlog_damaged:
            reason += (f"; {self.hlog_damaged:,} damaged histogram line(s) of {HLOG_NAME} "
                       "left out (their samples are not counted)")
        if self._records and not in_progress:  # journaled, but their histograms are not there
            n, hlog = len(self._records), self.dir / HLOG_NAME
            which = "interval of the journal is" if n == 1 else "intervals of the journal are"
            reason += (f"; the last {n:,} {which} not counted: {HLOG_NAME} "
                       + ("holds none of their histograms (cut short)" if hlog.exists()
                          else "is missing"))
        return Incomplete(in_progress=in_progress, recorded_s=round(recorded_s, 3),
                          planned_s=round(planned_s, 3), intervals=self.intervals,
                          reason=reason)

    def _telemetry_section(self, phases: list[PhaseInfo]) -> Telemetry:
        data = self._telemetry
        if not data["sources"] and not data["series"]:
            return Telemetry(available=False,
                             reason="no telemetry in the journal (none sampled, or the run "
                                    "died before its first interval)")
        stopped = self.ended.get("stopped", True) if self.ended is not None else True
        return telemetry_section(data, phases, self.recorder, stopped_early=bool(stopped))


def _copy(judge: LiveJudge | None) -> LiveJudge | None:
    """A deep copy whose histograms encode themselves: a copied histogram's
    encoder still points at the original (a weak proxy, copied as is)."""
    clone = copy.deepcopy(judge)
    for tracked in getattr(clone, "tracked", ()):
        acyclic(tracked.hist)
    return clone


def rebuild(run_dir: Path, in_progress: bool = False) -> RunResult:
    """The run of a folder without run.json, from its journal and hlog."""
    state = Rebuild(run_dir)
    state.update()
    return state.result(in_progress)
