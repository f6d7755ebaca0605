"""journal.jsonl (loadkit.record.journal) and the rebuild from it
(loadkit.run.recover): what a run appends each interval reads back into
the same counters and histograms, a partial last line is tolerated, and the
listener keeps nothing per interval."""

from __future__ import annotations

import json
import os
import random
from array import array
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loadkit.errors import ErrorKind, InputError
from loadkit.record.hlog import HlogWriter
from loadkit.record.journal import (
    HLOG_NAME,
    JOURNAL_NAME,
    IntervalJournal,
    Journal,
    LineTail,
    parse_lines,
    read_journal,
)
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.result.model import PhaseInfo
from loadkit.run.recover import Rebuild, rebuild
from loadkit.slo.live import LiveJudge
from loadkit.slo.scopes import Phases
from loadkit.workload.slo_spec import parse_objective

MS = 1_000_000
PHASES = [{"name": "warm", "start_s": 0.0, "duration_s": 1.0, "warmup": True},
          {"name": "main.phase", "start_s": 1.0, "duration_s": 9.0, "warmup": False}]
TENANTS = ["acme", "beta co"]  # a space: the hlog tag writes it as `beta_co`


OBJECTIVES = [parse_objective("latency p50 < 1s in every 1s window"),
              parse_objective("error_rate < 50%"),
              parse_objective("ttft p90 < 1s", "tenant:acme")]


def header(**extra: Any) -> dict[str, Any]:
    return {
        "run_id": "r1", "pid": os.getpid(), "loadkit_version": "test", "host": "h",
        "git_commit": None, "started_at": "2026-01-01T00:00:00+00:00", "target": "t",
        "closed_loop": False,
        "workload": {"name": "w", "path": "w.yaml", "sha256": "0" * 64, "seed": 1,
                     "duration_s": 9.0, "warmup_s": 1.0, "interval_s": 0.5, "spec": {}},
        "phases": PHASES, "planned_s": 10.0, "interval_s": 0.5,
        "objectives": [o.model_dump(mode="json") for o in OBJECTIVES],
        "names": {"phases": [p["name"] for p in PHASES], "scenarios": ["chat"],
                  "tenants": TENANTS},
        "declared_rates": [[t, p["name"], 10.0] for t in TENANTS for p in PHASES],
        "lateness_bound_ms": 10.0, "strict": False, "allow_saturated": False,
        "telemetry": {"interval_s": 0.25, "price_per_gpu_hour": None, "gpus_declared": None},
        **extra}


class FakeStore:
    def __init__(self) -> None:
        self.series: dict[str, dict] = {}


class FakeSource:
    kind = "prometheus"

    def __init__(self) -> None:
        self.store, self.samples = FakeStore(), 0
        self.gpus: list[int] = []

    def describe(self) -> dict:
        return {"kind": "prometheus", "target": "http://x/metrics", "status": "ok",
                "reason": "", "samples": self.samples, "errors": 0}

    def sample(self, t_s: float, value: float) -> None:
        s = self.store.series.setdefault("vllm:num_requests_waiting", {
            "metric": "vllm:num_requests_waiting", "labels": {}, "unit": "", "kind": "gauge",
            "source": "prometheus", "t": array("d"), "v": array("d")})
        s["t"].append(t_s)
        s["v"].append(value)
        self.samples += 1


class FakeSession:
    def __init__(self) -> None:
        self.sources = [FakeSource()]


def write_run(tmp_path: Path, intervals: int = 12,
              seed: int = 7) -> tuple[Recorder, Counter[tuple[str, str]], LiveJudge]:
    """A recorder fed seeded requests, journaled as execute.py does, with the
    live judge a run has; returns (recorder, scheduled, judge)."""
    rng = random.Random(seed)
    telemetry = FakeSession()
    scheduled: Counter[tuple[str, str]] = Counter()
    with open(tmp_path / "latency.hlog", "wb", buffering=0) as hlog:
        recorder = Recorder(0, HlogWriter(hlog, 0.0), goodput=(("latency", "<", 50 * MS),))
        with Journal(tmp_path / JOURNAL_NAME, header(), sync=[hlog]) as journal:
            recorder.keyed = True
            judge = LiveJudge(OBJECTIVES, Phases([PhaseInfo(**p) for p in PHASES]), False,
                              on_breach=lambda _slo, _at: None, interval_s=0.5)
            recorder.events.interval_closed.add_listener(judge.on_interval)
            recorder.events.interval_closed.add_listener(
                IntervalJournal(journal, recorder, scheduled, telemetry))
            for k in range(intervals):
                t0 = k * 500 * MS
                phase = "warm" if t0 < 1000 * MS else "main.phase"
                for i in range(rng.randint(5, 40)):
                    tenant, at = rng.choice(TENANTS), t0 + i * 10 * MS
                    scheduled[(phase, tenant)] += 1
                    if rng.random() < 0.1:
                        recorder.drop(phase, "chat", tenant)
                        continue
                    error = rng.choice([None] * 8 + [ErrorKind.TIMEOUT, ErrorKind.HTTP_5XX])
                    end = at + rng.randint(5, 90) * MS
                    recorder.record(RequestRecord(
                        tenant, "chat", phase, intended=at, sent=at + MS, end=end,
                        first=None if error else at + 3 * MS,
                        events=None if error else [at + 3 * MS, at + 6 * MS, end],
                        output_tokens=None if error else 3, token_source="usage",
                        error=error, message=f"message {k}.{i}"))
                telemetry.sources[0].sample(t0 / 1e9 + 0.1, float(k))
                recorder.rotate(t0 + 500 * MS)
            journal.end(stopped=False)
    return recorder, scheduled, judge


def test_a_journal_reads_back_into_the_same_counters_and_histograms(tmp_path: Path) -> None:
    recorder, scheduled, judge = write_run(tmp_path)
    state = Rebuild(tmp_path)
    assert state.update() == 12 and state.ended is not None
    assert state.ended == {"t": "end", "wall": state.ended["wall"], "stopped": False}
    r = state.recorder
    for name in ("completed", "errors", "dropped", "good", "output_tokens", "token_sources",
                 "served"):
        assert getattr(r, name) == getattr(recorder, name), name
    assert state.scheduled == scheduled
    assert dict(r.error_examples) == dict(recorder.error_examples)
    assert r.cumulative.keys() == recorder.cumulative.keys()
    for key, h in recorder.cumulative.items():  # names with dots and spaces map back
        assert r.cumulative[key].get_total_count() == h.get_total_count(), key
        assert r.cumulative[key].get_max_value() == h.get_max_value(), key
    assert [vars(iv) for iv in r.intervals] == [vars(iv) for iv in recorder.intervals]
    series = state._telemetry["series"]["vllm:num_requests_waiting"]
    assert list(series["v"]) == [float(k) for k in range(12)]
    assert len(series["t"]) == 12 and list(series["t"]) == sorted(series["t"])

    live = state.result(in_progress=True)  # judges a copy: the state is left as it was
    assert live.incomplete is not None and live.incomplete.in_progress
    assert live.untrusted_reasons[0].startswith("in progress: ")
    result = state.result()
    assert result.incomplete is not None and not result.trusted
    assert not result.incomplete.in_progress
    assert result.counts.completed == sum(n for (p, _s, _t), n in recorder.completed.items()
                                          if p == "main.phase")
    windowed = next(s for s in result.slos if s.windows is not None)
    assert windowed == judge.results()[windowed.name]  # replayed window by window
    assert windowed.windows is not None and windowed.windows.total == 5
    assert "ended" in result.incomplete.reason
    assert result.telemetry is not None and "vllm:num_requests_waiting" in result.telemetry.series


def test_a_journal_from_before_served_counts_the_rates_by_the_phase_sent_for(
        tmp_path: Path) -> None:
    """A format-1 journal has no `served` (the rates' counts by the phase a
    request ended in): it is read as the loadkit that wrote it counted, by
    the phase each was sent for, which is what a recorder given no phases
    counts, so the rates come back as they were, not as zero."""
    recorder, _scheduled, _judge = write_run(tmp_path)
    path = tmp_path / JOURNAL_NAME
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[0]["journal"] = 1
    path.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "served"}) + "\n"
                            for line in lines))
    assert '"served"' not in path.read_text()
    state = Rebuild(tmp_path)
    state.update()
    assert state.recorder.served == recorder.served and recorder.served
    assert state.result().throughput.requests_per_s > 0


def test_a_partial_last_line_is_left_out_and_read_once_it_is_whole(tmp_path: Path) -> None:
    write_run(tmp_path, intervals=6)
    path = tmp_path / JOURNAL_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    cut = lines[-2][: len(lines[-2]) // 2]  # the last interval's line, half written
    path.write_bytes(b"".join(lines[:-2]) + cut)
    records, damaged = read_journal(path)
    assert damaged is None and [r["t"] for r in records] == ["header"] + ["interval"] * 5
    incomplete = rebuild(tmp_path).incomplete
    assert incomplete is not None and incomplete.intervals == 5

    tail = LineTail(path)
    assert len(tail.lines()) == 6
    with open(path, "ab") as f:
        f.write(lines[-2][len(cut):])  # the writer finishes the line
    assert [json.loads(x)["n"] for x in tail.lines()] == [5]
    assert tail.lines() == []


def test_a_killed_run_loses_only_the_interval_whose_histograms_are_missing(tmp_path: Path) -> None:
    write_run(tmp_path, intervals=6)
    hlog = tmp_path / "latency.hlog"
    text = hlog.read_text().splitlines(keepends=True)
    last_start = text[-1].split(",")[1]
    kept = [x for x in text if not x.startswith("Tag=") or x.split(",")[1] != last_start]
    kept.append(text[-1][:40])  # and a cut hlog line, as a kill mid-write leaves
    hlog.write_text("".join(kept))
    state = Rebuild(tmp_path)
    assert state.update() == 5  # the 6th interval's journal line waits for its series
    result = state.result()
    assert result.incomplete is not None and result.incomplete.intervals == 5
    assert result.incomplete.recorded_s == 2.5
    assert "the last 1 interval of the journal is not counted: latency.hlog holds none " \
        "of their histograms (cut short)" in result.incomplete.reason


def test_a_rebuild_without_its_hlog_says_so(tmp_path: Path) -> None:
    """A folder whose latency.hlog is gone rebuilt as "0 completed" in 0 s,
    without a word of the hlog (an audit): the reason names it."""
    write_run(tmp_path, intervals=6)
    (tmp_path / "latency.hlog").unlink()
    reason = rebuild(tmp_path).incomplete.reason  # type: ignore[union-attr]
    assert reason.endswith("; the last 6 intervals of the journal are not counted: "
                           "latency.hlog is missing"), reason


def test_a_damaged_line_stops_reading_there(tmp_path: Path) -> None:
    write_run(tmp_path, intervals=4)
    path = tmp_path / JOURNAL_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]) + b"\0\0\0\0\n" + b"".join(lines[3:]))
    records, damaged = parse_lines(path.read_bytes().split(b"\n")[:-1])
    assert len(records) == 3 and damaged == "line 4 is damaged"
    result = rebuild(tmp_path)
    assert result.incomplete is not None and result.incomplete.intervals == 2
    assert "damaged" in result.incomplete.reason


@pytest.mark.parametrize("edit", [
    lambda r: {k: v for k, v in r.items() if k != "iv"},  # a key gone
    lambda r: {**r, "iv": "soon"},  # a value of the wrong kind
    lambda r: {"t": "note"},  # a note without its text
])
def test_an_edited_record_is_bad_input_named_not_an_internal_error(
        tmp_path: Path, edit: Any) -> None:
    """Valid JSON that loadkit did not write (an edited journal): exit 2
    with the file named, not "internal error"."""
    write_run(tmp_path, intervals=4)
    path = tmp_path / JOURNAL_NAME
    lines = path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    k = next(i for i, r in enumerate(records) if r.get("t") == "interval")
    lines[k] = json.dumps(edit(records[k]))
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="is not one this loadkit wrote") as caught:
        rebuild(tmp_path)
    assert caught.value.exit_code == 2 and JOURNAL_NAME in str(caught.value)


@pytest.mark.parametrize("damage", ["line", "payload"])
def test_a_damaged_hlog_line_loses_its_series_and_says_so(tmp_path: Path, damage: str) -> None:
    """One histogram line of the hlog unreadable (its fields, or its encoded
    histogram): that series of that interval is left out, the reason counts
    it, and the intervals after it are rebuilt (one bad line once dropped
    every interval from there on, and a bad payload went unsaid)."""
    write_run(tmp_path, intervals=4)
    path = tmp_path / HLOG_NAME
    lines = path.read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if line.startswith("Tag="))
    tag, start, length, peak, payload = lines[k].split(",")
    lines[k] = (f"{tag},soon,{length},{peak},{payload}" if damage == "line"
                else f"{tag},{start},{length},{peak},{payload[:10]}!!{payload[12:]}")
    path.write_text("\n".join(lines) + "\n")
    result = rebuild(tmp_path)
    assert result.incomplete is not None and result.incomplete.intervals == 4
    assert "1 damaged histogram line(s) of latency.hlog left out" in result.incomplete.reason


def test_a_folder_without_a_journal_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no run.json and no journal.jsonl"):
        rebuild(tmp_path)
    (tmp_path / JOURNAL_NAME).write_text('{"t": "interval"}\n')
    with pytest.raises(InputError, match="not a loadkit journal"):
        rebuild(tmp_path)


def test_the_listener_keeps_nothing_per_interval(tmp_path: Path) -> None:
    """Memory flat in run length: the journal writes deltas and keeps only the
    last value of each counter; a line holds only the keys that moved."""
    recorder = Recorder(0, phases=(("main.phase", 400.0),))
    scheduled: Counter[tuple[str, str]] = Counter()
    with Journal(tmp_path / JOURNAL_NAME, header()) as journal:
        listener = IntervalJournal(journal, recorder, scheduled)
        recorder.events.interval_closed.add_listener(listener)
        for k in range(300):
            scheduled[("main.phase", "acme")] += 1
            recorder.record(RequestRecord("acme", "chat", "main.phase", intended=k * MS,
                                          sent=k * MS, end=k * MS + 5 * MS))
            recorder.rotate((k + 1) * 1000 * MS)
    sizes = {name: len(seen) for name, seen in listener._seen.items()}
    assert sizes == {"completed": 1, "errors": 0, "dropped": 0, "good": 0, "tokens": 0,
                     "scheduled": 1, "sources": 1, "itl_sources": 0,
                     "prompt_tokens": 0, "cached_tokens": 0, "prompt_asked": 0,
                     "prompt_matched": 0, "sessions": 0, "finish_reasons": 0,
                     "stream_notes": 0, "reasoning_tokens": 0, "expected_cached": 0,
                     "abandoned": 0, "tokens_read": 0, "tokens_received": 0,
                     "retried": 0, "sent_bytes": 0, "served": 1}
    records, _ = read_journal(tmp_path / JOURNAL_NAME)
    last = records[-1]
    assert last["completed"] == [["main.phase", "chat", "acme", 1]] and "errors" not in last
