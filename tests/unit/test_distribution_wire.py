"""What crosses the wire in a distributed run (loadkit/distributed/wire.py): pure."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from loadkit.arrivals import schedule
from loadkit.distributed.wire import (
    COUNTERS,
    PartWriter,
    absorb,
    clock_offset,
    job,
    loaded_from,
    shard,
)
from loadkit.errors import ErrorKind
from loadkit.record.recorder import Recorder, RequestRecord
from loadkit.workload.loader import load_workload

ROOT = Path(__file__).resolve().parents[2]


def test_shards_are_disjoint_and_cover_the_schedule_per_tenant_and_phase() -> None:
    loaded = load_workload(ROOT / "workloads" / "multi-tenant.yaml")
    whole = list(schedule(loaded.workload))
    shards = [list(shard(schedule(loaded.workload), k, 3)) for k in range(3)]
    assert sorted(s for part in shards for s in part) == sorted(whole)  # disjoint, covering
    assert all(part == sorted(part) for part in shards)  # each in time order
    # Each worker carries a third of every tenant's arrivals in every phase,
    # to within one request.
    by_key = Counter((s.tenant, s.phase) for s in whole)
    for part in shards:
        counts = Counter((s.tenant, s.phase) for s in part)
        for key, n in by_key.items():
            assert abs(counts[key] - n / 3) <= 1, (key, counts[key], n)


@pytest.mark.parametrize("name", ["trace-replay.yaml", "mooncake-replay.yaml",
                                  "chat-sessions.yaml"])
def test_a_job_round_trips_the_workload_its_traces_and_prompts(name: str) -> None:
    loaded = load_workload(ROOT / "workloads" / name)
    again = loaded_from(job(loaded, "http://127.0.0.1:1"))
    assert again.workload == loaded.workload and again.traces == loaded.traces
    assert again.prompt_sets == loaded.prompt_sets
    assert list(schedule(again.workload, again.traces)) == list(
        schedule(loaded.workload, loaded.traces))


def test_a_traced_session_round_trips(tmp_path: Path) -> None:
    import json
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in (
        {"timestamp": 0, "session_id": "a", "prompt_tokens": 3},
        {"timestamp": 1, "session_id": "a", "prompt_tokens": 4})))
    (tmp_path / "w.yaml").write_text("duration: 5s\narrival: {process: trace, path: t.jsonl}\n"
                                     "scenarios: [{name: c, kind: openai-chat}]\n")
    loaded = load_workload(tmp_path / "w.yaml")
    again = loaded_from(job(loaded, "http://127.0.0.1:1"))
    assert again.traces == loaded.traces and loaded.traces["t.jsonl"][0].script == ((1.0, 4, None),)


def records(seed: int, n: int) -> list[RequestRecord]:
    rng, out = random.Random(seed), []
    for i in range(n):
        t0 = i * 10_000_000
        r = RequestRecord(rng.choice("ab"), "chat", "measure", t0, t0 + rng.randint(0, 10**6))
        r.first = r.sent + rng.randint(10**6, 5 * 10**7)
        r.events = [r.first + k * rng.randint(10**6, 10**7) for k in range(5)]
        r.end, r.output_tokens, r.token_source = r.events[-1], 5, "usage"
        r.reasoning_tokens = rng.choice([None, 3])
        if rng.random() < 0.05:
            r.error, r.message = ErrorKind.HTTP_5XX, f"HTTP 500 #{i}"
        elif rng.random() < 0.05:
            r.abandoned = "read_tokens"  # its client left
        out.append(r)
    return out


def test_merged_parts_equal_one_recorder_that_saw_everything() -> None:
    """Two workers' intervals, merged by summing, give exactly what one
    recorder recording every request gives: histograms and counters."""
    one = Recorder(0, goodput=(("latency", "<", 40_000_000),))
    one.keyed = True
    master = Recorder(0, goodput=one.goodput)
    master.keyed = True
    workers = [Recorder(0, goodput=one.goodput) for _ in range(2)]
    writers = [PartWriter(w) for w in workers]
    batches = [records(1, 300), records(2, 300)]
    for step in range(3):  # three intervals
        for w, batch in zip(workers, batches):
            for r in batch[step * 100:(step + 1) * 100]:
                w.record(r)
                one.record(r)
        for w, writer in zip(workers, writers):
            histograms = dict(w.current)
            w.rotate((step + 1) * 10**9)
            absorb(master, writer.part(step, step + 1, histograms))
        merged_iv, one_iv = master.rotate((step + 1) * 10**9), one.rotate((step + 1) * 10**9)
        # Every figure of the interval: its exact mean service time and its
        # abandoned count too (they were 0 in a merged run once).
        assert merged_iv.abandoned and merged_iv.service_mean_ms
        assert merged_iv == one_iv
    assert master.cumulative.keys() == one.cumulative.keys()
    for key, h in one.cumulative.items():
        m = master.cumulative[key]
        assert m.get_total_count() == h.get_total_count(), key
        for q in (50.0, 99.0, 99.9, 100.0):
            assert m.get_value_at_percentile(q) == h.get_value_at_percentile(q), (key, q)
    for name in COUNTERS:
        assert getattr(master, name) == getattr(one, name), name
    assert master.reasoning_tokens == one.reasoning_tokens  # in COUNTERS, so a part carries it
    assert sum(one.reasoning_tokens.values()) > 0
    assert master.error_examples == one.error_examples


def test_the_clock_offset_comes_from_the_shortest_round_trip() -> None:
    # (sent, their clock, received): the 2-ms round trip bounds the error to 1 ms.
    samples = [(0.0, 5.020, 0.010), (1.0, 6.001, 1.002), (2.0, 7.030, 2.050)]
    offset, rtt = clock_offset(samples)
    assert abs(offset - 5.0) < 1e-9 and abs(rtt - 0.002) < 1e-9
