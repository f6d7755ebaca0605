"""RunResult: the typed model of `run.json`, the one serialisable truth of a run.

Every renderer (report.html, summary.md, junit.xml, the console, `loadkit
compare`) reads this model, and `loadkit report` re-renders from a saved
run.json alone. The JSON Schema in docs/run.schema.json is generated from it
(`python -m loadkit.result.schema`).

pydantic models, frozen: validation of a loaded file is the model's own
(a damaged file fails with the key that is wrong), the schema comes for free,
and the workload file is already validated with pydantic. Readers ignore
keys they do not know, so a newer loadkit may add fields within a version.

Times are in milliseconds unless a key says otherwise (`_s` seconds).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Final, Literal

from pydantic import ConfigDict, Field, model_serializer
from pydantic.dataclasses import dataclass as pydantic_dataclass

# The vocabulary and the telemetry part live in their own modules; their
# names are this module's too, as run.json's model is one.
from loadkit.result.parts import ALL as ALL
from loadkit.result.parts import NOTHING_JUDGED as NOTHING_JUDGED
from loadkit.result.parts import Part, Scope, Verdict
from loadkit.result.parts import SeriesTag as SeriesTag
from loadkit.result.parts import safe_part as safe_part
from loadkit.result.telemetry import Figures as Figures
from loadkit.result.telemetry import Gpu as Gpu
from loadkit.result.telemetry import Telemetry
from loadkit.result.telemetry import TelemetrySeries as TelemetrySeries
from loadkit.result.telemetry import TelemetrySource as TelemetrySource
from loadkit.result.verdicts import Aborted, DecidedEarly, SLOResult
from loadkit.result.verdicts import Disturbance as Disturbance
from loadkit.result.verdicts import Recovery as Recovery
from loadkit.result.verdicts import Trend as Trend
from loadkit.result.verdicts import Window as Window
from loadkit.result.verdicts import Windows as Windows
from loadkit.result.why import Cause as Cause
from loadkit.result.why import Decomposition as Decomposition
from loadkit.result.why import Why
from loadkit.result.why import WhyPoint as WhyPoint

SCHEMA_VERSION: Final = 2
# Versions this loadkit reads: 1's documents are 2's with one point per interval.
READABLE_VERSIONS: Final = (1, 2)


class WorkloadInfo(Part):
    name: str
    path: str
    sha256: str
    seed: int
    duration_s: float
    warmup_s: float
    interval_s: float
    # The validated workload as written (`${VAR}`s unresolved); its schema is
    # the workload file's own (README: workload reference).
    spec: dict[str, Any] = Field(default_factory=dict)


class PhaseInfo(Part):
    name: str
    start_s: float
    duration_s: float
    warmup: bool


class Counts(Part):
    """Requests of the measured phases, except where named."""

    completed: int
    errors: int
    dropped: int  # the in-flight cap was reached
    unfinished: int  # cancelled without a verdict by an interrupt (Ctrl-C, SIGTERM)
    warmup_completed: int
    # Requests whose client left (workload `abandon:`), by the rule that fired
    # (patience, read_tokens, tool_call): neither completed nor failed.
    abandoned: dict[str, int] = Field(default_factory=dict)
    tokens_read: int = 0  # the token events they read before leaving
    retried: int = 0  # requests sent again by a client that had left (`<name>:retry`)
    sent_bytes: int = 0  # request bodies, every request sent (images and audio included)
    scheduled: dict[str, int]  # "phase/tenant": n, warm-ups included

    @property
    def none_answered(self) -> bool:
        """No request of the measured phases completed, nor was left by its
        client: a verdict on them has no sample, and can never be a pass."""
        return self.completed == 0 and not any(self.abandoned.values())


class Throughput(Part):
    requests_per_s: float
    output_tokens_per_s: float


class Errors(Part):
    by_kind: dict[str, int]
    examples: dict[str, list[str]]  # kind -> up to 3 messages as received: escape them


class Tokens(Part):
    output_total: int
    source: dict[str, int]  # usage / chunks / none -> requests
    # Streams by how ITL knew each event's tokens: usage (per event), estimated
    # (total over events), one (one token per event)
    itl_source: dict[str, int] = Field(default_factory=dict)
    # usage.prompt_tokens summed where the server sent it, and of those the
    # ones it served from its prefix cache (prompt_tokens_details.cached_tokens)
    prompt_total: int | None = None
    cached_total: int | None = None
    # Of cached_total, what the run's own earlier prompts explain: the hits a
    # prefix cache empty at the start would give (record/cache_model.py).
    expected_cached_total: int | None = None
    # Of output_total, the tokens reasoning models spent reasoning (usage's
    # completion_tokens_details.reasoning_tokens, else counted); None: none.
    reasoning_total: int | None = None
    # The server's prompt tokens over those asked for, minus 1, where both are
    # known: how far real input lengths are from the asked (0.05 = 5% longer).
    prompt_drift: float | None = None
    # Completed requests of the measured phases by the server's finish_reason
    # (length, stop, tool_calls, content_filter; `missing`: it gave none)
    finish_reason: dict[str, int] = Field(default_factory=dict)
    # Streams that ended after their finish_reason without `data: [DONE]`
    # (complete, counted as a note: transformers serve sends none)
    no_done: int = 0


class CacheState(Part):
    """The server's prefix-cache hits against what the run's own prompts
    explain (slo/cache_state.py); `warm` makes a passing verdict inconclusive."""

    state: Literal["as expected", "warm", "evicting"]
    observed_share: float  # cached / prompt tokens, as the server said
    expected_share: float  # from this run's own prompts, from an empty cache
    reset: bool  # `cache: cold`: the run reset the server's cache before its clock
    reason: str


class Reclaim(Part):
    """Whether the server stopped working for clients that had left
    (slo/reclaim.py): tokens it generated for them, and how soon it aborted."""

    abandoned: int  # requests whose client left
    received: int  # tokens the clients got: completed answers and what abandoned streams read
    counter: str | None = None  # the server's generated-token counter (None: it exports none)
    generated: int | None = None  # by the counter, first scrape to last
    zombie_tokens: int | None = None  # generated - received
    per_abandoned: float | None = None
    share: float | None = None  # of generated
    abort_counter: str | None = None  # its aborted-request counter (None: it exports none)
    reclaimed: int = 0  # departures matched with an abort: reclaim_time samples
    unreclaimed: int = 0  # never aborted in 60 s or by the run's end (at their age then)
    unobserved: int = 0  # left too close to the end to tell
    missing: list[str] = []  # what could not be measured, and why


class MediaSent(Part):
    """What one scenario's requests carried: counts, bytes, sizes, formats,
    distinct images by hash; every request built (probe and warm-up too, a
    session's later turns that re-send its media each again)."""

    requests: int
    images: int = 0
    image_bytes: int = 0
    image_urls: int = 0  # images sent by URL, for the server to fetch
    image_formats: dict[str, int] = {}
    image_sizes: dict[str, int] = {}  # "WxH": images
    distinct_images: int = 0
    audio: int = 0
    audio_seconds: float = 0.0
    audio_bytes: int = 0


class Sessions(Part):
    """Multi-turn sessions of the measured phases (by their first turn's phase)."""

    started: int
    completed: int
    failed: int  # ended by a failed turn
    abandoned: int = 0  # ended by a client that left a turn
    cut: int = 0  # cut between two turns by the run's end (the drain's deadline) or its stop


class Health(Part):
    """The generator's own health: can its numbers be trusted?"""

    cpu_percent: float | None  # one core = 100
    steal_percent: float | None
    lateness_p99_ms: float
    lateness_bound_ms: float
    saturated: bool


class Isolation(Part):
    """One tenant's p99 while others spike against its p99 in quiet phases."""

    spike_phases: list[str]
    quiet_phases: list[str]
    ratio: float | None = None
    p99_spike_ms: float | None = None
    p99_quiet_ms: float | None = None
    samples_spike: int = 0
    samples_quiet: int = 0


class Summary(Part):
    """A histogram's summary in ms; only `count` when it is empty."""

    count: int
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p99_9: float | None = Field(None, alias="p99.9")
    max: float | None = None
    mean: float | None = None

    @model_serializer(mode="wrap")
    def _present(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


@pydantic_dataclass(config=ConfigDict(extra="ignore"))
class Interval:
    """One closed interval of the run, every scenario and tenant together: the
    recorder fills it in as the interval closes (a mutable dataclass, the
    same type from the recorder to run.json's `timeseries`)."""

    start_s: float
    end_s: float
    completed: int = 0
    errors: int = 0
    output_tokens: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None
    cpu_percent: float | None = None  # the generator, one core = 100
    steal_percent: float | None = None  # the host
    lateness_p99_ms: float | None = None
    tenant_latency_p99_ms: dict[str, float] = field(default_factory=dict)
    # Prompt tokens the server said it served from its prefix cache, as a share
    # of the prompt tokens it counted (usage); None where it said nothing.
    cached_share: float | None = None
    # The server's prompt tokens over those asked for, minus 1 (usage); None
    # where it said nothing.
    prompt_drift: float | None = None
    # Completed requests by the server's finish_reason (`missing`: none given)
    finish_reasons: dict[str, int] = field(default_factory=dict)
    # run.json keeps at most 1,440 points (loadkit.record.intervals): in a
    # longer run each merges this many intervals, latency_p99_ms is the worst
    # of their p99s and this the best (None: one interval).
    intervals: int = 1
    latency_p99_low_ms: float | None = None
    abandoned: int = 0  # requests whose client left (workload `abandon:`)
    # The mean service time (end − sent) of the requests it completed, exact:
    # what the server's own mean timings add up to (slo/why.py).
    service_mean_ms: float | None = None


class Incomplete(Part):
    """run.json was rebuilt from journal.jsonl and latency.hlog, not written
    by the run: it was killed (kill -9, OOM, power cut), or is still going
    (a live report). The figures cover `recorded_s` of `planned_s`."""

    in_progress: bool  # a live report of a run still going; else the run died
    recorded_s: float  # run time up to the end of the last journaled interval
    planned_s: float  # the schedule's length, warm-up included
    intervals: int
    reason: str


class Note(Part):
    """A note an operator typed on the live view (`loadkit run --ui`) while
    the run went ("deployed v2"), stamped at the run's time."""

    at_s: float  # seconds since the run's start (warm-up included)
    text: str


class WorkerRow(Part):
    """One worker of a distributed run."""

    worker: str  # Locust's client id (host_uuid)
    host: str | None
    shard: int  # slots in its shard of the schedule
    sent: int  # slots it reported sent (dropped by its in-flight cap included)
    lateness_p99_ms: float | None
    cpu_percent: float | None  # its engine process, one core = 100
    clock_offset_ms: float  # its wall clock minus the master's, from round trips
    rtt_ms: float  # the shortest round trip that offset came from
    status: str  # "done", or when and why it was lost
    lost: int = 0  # its slots never sent: it was lost first
    unfinished: int = 0  # sent, never reported finished when it was lost (failures)


class Distribution(Part):
    """A run carried by several workers (`--workers`, `--master`)."""

    workers: list[WorkerRow]
    lost: int  # slots no worker sent: their worker was lost
    allow_worker_loss: bool
    note: str | None = None  # what a lost worker took with it, when allowed


def as_ran(phases: list[PhaseInfo], ended_s: float | None) -> list[PhaseInfo]:
    """The phases as a run that stopped at `ended_s` ran them: each cut there
    (one that never began lasts 0 s); None: as planned."""
    if ended_s is None:
        return phases
    return [p.model_copy(update={"duration_s": max(0.0, min(p.duration_s, ended_s - p.start_s))})
            for p in phases]


def run_verdict(of_slos: Verdict, counts: Counts, cache: CacheState | None
                ) -> tuple[Verdict, str | None]:
    """The run's verdict from its SLOs' together, and why it is worse when it
    is: no sample passed nothing, and a warm prefix cache, not the release,
    may have passed it."""
    if of_slos == Verdict.PASS and counts.none_answered:
        return Verdict.INCONCLUSIVE, NOTHING_JUDGED
    if of_slos == Verdict.PASS and cache is not None and cache.state == "warm":
        return Verdict.INCONCLUSIVE, f"prefix cache warm: {cache.reason}"
    return of_slos, None


class RunResult(Part):
    """What `run.json` holds; see docs/run-json.md."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    run_id: str
    loadkit_version: str
    host: str
    git_commit: str | None
    started_at: str
    finished_at: str
    target: str  # credentials stripped
    closed_loop: bool
    workload: WorkloadInfo
    phases: list[PhaseInfo]
    aborted: Aborted | None = None
    decided: DecidedEarly | None = None
    # Seconds since the start when a run stopped before its schedule's end
    # (an abort, the verdict decided, Ctrl-C, fail-fast, a rebuild's last
    # interval); None: it ran its length.
    ended_s: float | None = None
    verdict: Verdict
    trusted: bool
    untrusted_reasons: list[str]
    slos: list[SLOResult]
    counts: Counts
    throughput: Throughput
    errors: Errors
    tokens: Tokens
    health: Health
    isolation: dict[str, Isolation] = Field(default_factory=dict)
    series: dict[str, dict[Scope, Summary]]  # metric -> scope -> summary
    timeseries: list[Interval]
    histograms: dict[str, str]  # metric.phase.scenario.tenant -> base64 HdrHistogram
    telemetry: Telemetry | None = None
    incomplete: Incomplete | None = None  # None: the run wrote this itself, to its end
    distribution: Distribution | None = None  # None: one process ran the load
    sessions: Sessions | None = None  # None: no scenario has sessions
    why: Why | None = None  # None: not analysed (an older run, or no request completed)
    cache: CacheState | None = None  # None: the server said nothing of its prefix cache
    reclaim: Reclaim | None = None  # None: no client left
    # Images and audio the requests carried, per scenario (never the media).
    media: dict[str, MediaSent] = {}
    notes: list[Note] = Field(default_factory=list)  # typed on the live view (--ui)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, by_alias=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> RunResult:
        """Raises pydantic.ValidationError; `loadkit.result.files` words it."""
        return cls.model_validate_json(text)

    def summary(self, metric: str, scope: str = ALL) -> Summary | None:
        return self.series.get(metric, {}).get(Scope(scope))

    @property
    def measured_s(self) -> float:
        """Seconds measured (warm-up excluded): the measured phases, cut where a
        run that ended early (an abort, the verdict decided, Ctrl-C) stopped,
        or where the journal of a rebuilt one (killed, or still going) ends:
        the time its throughput is over."""
        end = self.ended_s
        if end is None and self.incomplete is not None:  # written before ended_s was
            end = self.incomplete.recorded_s
        elif end is None and (self.aborted or self.decided) and self.timeseries:
            end = self.timeseries[-1].end_s
        return sum(p.duration_s for p in as_ran(self.phases, end) if not p.warmup)

    @property
    def own_verdict_reason(self) -> str | None:
        """Why the run's verdict is worse than its SLOs' together (nothing
        answered, a warm prefix cache); None when it is theirs."""
        of_slos = Verdict.overall([s.verdict for s in self.slos])
        return None if self.verdict == of_slos else \
            run_verdict(of_slos, self.counts, self.cache)[1]

    @property
    def cut_short(self) -> bool:
        """Measured less than planned; phases rescaled by `--duration` may sum
        a float's last digit over it, which is not a cut."""
        return self.measured_s < self.workload.duration_s - 1e-6
