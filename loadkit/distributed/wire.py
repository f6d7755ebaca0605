"""What crosses the wire in a distributed run, as plain JSON: pure functions.

The master owns the workload, the seed and the schedule; every worker
computes the same single-process schedule and runs its shard of it: each
tenant's slots dealt round-robin (`owners`). The shards are disjoint, their
union is that schedule exactly, slots keep their times (so phase boundaries
hold), and each tenant's rate is split evenly over the workers.

A shard reports each closed interval as a `part`: its histograms encoded
(HdrHistogram's own compressed form, merged exactly by adding counts) and
its counters' growth since the last part. The master adds the parts of one
interval from every worker into its recorder and closes the interval there,
so the .hlog, live SLO windows and the result are those of one process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from loadkit.arrivals import Slot
from loadkit.errors import ErrorKind
from loadkit.record.histogram import HdrHistogram, new_histogram
from loadkit.record.recorder import Recorder
from loadkit.workload.loader import LoadedWorkload
from loadkit.workload.models import Workload
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.traces import TraceRow

__all__ = ["PartWriter", "absorb", "clock_offset", "job", "loaded_from", "owners", "shard"]

# The recorder's counters a part carries, by name.
COUNTERS = ("errors", "dropped", "completed", "output_tokens", "good", "token_sources",
            "itl_sources", "prompt_tokens", "cached_tokens", "sessions", "prompt_asked",
            "prompt_matched", "finish_reasons", "stream_notes", "expected_cached", "abandoned",
            "tokens_read", "tokens_received", "retried", "sent_bytes", "served",
            "reasoning_tokens", "service_ns")


def owners(slots: Iterable[Slot], n: int) -> Iterator[tuple[int, Slot]]:
    """(worker, slot) for the whole schedule: each tenant's slots are dealt
    round-robin (its j-th to worker (j + tenant) mod n), so every worker
    carries 1/n of every tenant's arrivals in any stretch of the run (a
    phase, a spike) to within one request."""
    dealt: Counter = Counter()
    for s in slots:
        j = dealt[s.tenant]
        dealt[s.tenant] = j + 1
        yield (j + s.tenant) % n, s


def shard(slots: Iterable[Slot], k: int, n: int) -> Iterator[Slot]:
    """Worker k of n's slots, in time order."""
    return (s for owner, s in owners(slots, n) if owner == k)


def job(loaded: LoadedWorkload, base_url: str) -> dict[str, Any]:
    """The workload as the master resolved it, for the workers. Header values
    stay as written (`${VAR}`): a secret is resolved from each worker's own
    environment and never crosses the channel."""
    return {"workload": loaded.workload.model_dump(mode="json", by_alias=True),
            "path": loaded.path, "sha256": loaded.sha256, "base_url": base_url,
            "traces": {p: [list(r) for r in rows] for p, rows in loaded.traces.items()},
            "prompt_sets": {p: [list(r) for r in rows] for p, rows in loaded.prompt_sets.items()},
            "tokenizer": loaded.tokenizer}


def loaded_from(job: dict[str, Any]) -> LoadedWorkload:
    return LoadedWorkload(
        Workload.model_validate(job["workload"]), job["path"], job["sha256"],
        traces={p: [TraceRow(r[0], r[1], r[2], tuple(r[3]), r[4],
                             tuple((o, pr, out) for o, pr, out in r[5])) for r in rows]
                for p, rows in job["traces"].items()},
        prompt_sets={p: [Prompt(r[0], r[1], r[2], None if r[3] is None else
                                tuple((said, reply) for said, reply in r[3])) for r in rows]
                     for p, rows in job["prompt_sets"].items()},
        tokenizer=job.get("tokenizer"))


class PartWriter:
    """A shard's recorder listener: each closed interval as a part."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._seen: dict[str, Counter] = {name: Counter() for name in COUNTERS}
        self._examples = dict.fromkeys(ErrorKind, 0)

    def part(self, interval_start_s: float, interval_end_s: float,
             histograms: dict[tuple[str, str, str, str], HdrHistogram]) -> dict[str, Any]:
        rec = self.recorder
        grown = {}
        for name in COUNTERS:
            now: Counter = getattr(rec, name)
            delta = now - self._seen[name]
            self._seen[name] = Counter(now)
            grown[name] = [[*(k if isinstance(k, tuple) else (k,)), v] for k, v in delta.items()]
        examples = {}
        for kind, messages in rec.error_examples.items():
            examples[kind] = messages[self._examples.get(ErrorKind(kind), 0):]
            self._examples[ErrorKind(kind)] = len(messages)
        return {"start_s": interval_start_s, "end_s": interval_end_s,
                "histograms": [[*key, h.encode().decode("ascii")]
                               for key, h in histograms.items() if h.get_total_count()],
                "counters": grown, "examples": {k: v for k, v in examples.items() if v}}


def absorb(recorder: Recorder, p: dict[str, Any]) -> None:
    """Add one worker's part into the master's open interval (sums only)."""
    for *key, encoded in p["histograms"]:
        series = (key[0], key[1], key[2], key[3])
        h = recorder.current.get(series)
        if h is None:
            h = recorder.current[series] = new_histogram()
        h.decode_and_add(encoded)
    for name, rows in p["counters"].items():
        counter: Counter = getattr(recorder, name)
        for *key, n in rows:
            k = tuple(key) if len(key) > 1 else key[0]
            counter[k] += n
            recorder.count_merged(name, k, n)
    for kind, messages in p["examples"].items():
        kept = recorder.error_examples[kind]
        kept.extend(messages[:max(0, 3 - len(kept))])


def clock_offset(samples: Iterable[tuple[float, float, float]]) -> tuple[float, float]:
    """(offset, round trip) in seconds from (sent, their clock, received)
    pings: the sample with the shortest round trip bounds the error best
    (NTP's rule); offset = their clock - ours at the midpoint."""
    sent, theirs, received = min(samples, key=lambda s: s[2] - s[0])
    return theirs - (sent + received) / 2, received - sent
