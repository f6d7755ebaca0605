"""CapacityResult: the typed model of `capacity.json` (its own `schema_version` 1).

pydantic models, frozen, in the style of run.json's (loadkit/result/model.py,
whose `Part` base they share): a saved capacity.json is read back validated
(`loadkit capacity RESULT.json --expect ...`, `loadkit capacity --compare`),
and readers ignore keys they do not know.

Loads are in `unit`: req/s for open-loop workloads, users (closed-loop
concurrency) otherwise. Times in ms unless a key says otherwise.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from loadkit.capacity.search import Conclusion, Status
from loadkit.result.model import Cause, Decomposition, Part, Verdict

SCHEMA_VERSION: Final = 1
RATE, USERS = "req/s", "users"


class SloPoint(Part):
    """One SLO at one probe: observed value, its 95% interval and the verdict."""

    name: str  # `text [scope]`
    text: str
    metric: str
    op: str
    threshold: float  # in `unit` terms (ms; a fraction for %)
    unit: str
    observed: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    marginal: bool = False
    verdict: Verdict
    reason: str = ""


class Percentiles(Part):
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None


class ProbeRecord(Part):
    """One probe: the load asked, what was sent and served, and how it went."""

    index: int  # 1, 2, ... in the order run
    value: float  # the load asked, in the result's unit
    duration_s: float  # measured seconds planned (its warm-up excluded)
    warmup_s: float
    decided_s: float | None = None  # it ended once its SLOs were decided, after this long
    attempt: int = 0  # > 0: an extension of an inconclusive probe at the same load
    status: Status
    reasons: list[str] = Field(default_factory=list)  # why not pass / fail, when so
    folder: str  # the probe's own run folder, relative to capacity.json's
    run_id: str | None = None
    elapsed_s: float  # wall time, start-up, warm-up and drain included
    offered_rps: float | None = None  # the schedule's own rate (measured phases)
    sent_rps: float | None = None  # requests sent per measured second
    throughput_rps: float = 0.0  # completed per measured second
    goodput_rps: float | None = None  # completed within the goodput rules, per second
    output_tokens_per_s: float = 0.0
    completed: int = 0
    errors: int = 0
    dropped: int = 0
    lateness_p99_ms: float | None = None
    saturated: bool = False
    latency: dict[str, Percentiles] = Field(default_factory=dict)  # metric -> percentiles
    slos: list[SloPoint] = Field(default_factory=list)
    gpu_util_mean: float | None = None  # % (simulated when the simulator's gauges)
    idle_silicon: float | None = None  # %
    energy_per_request_j: float | None = None
    cost_per_1m_output_tokens: float | None = None
    cost_per_1k_requests: float | None = None
    energy_per_1k_output_tokens_j: float | None = None
    telemetry_simulated: bool = False
    # The mean request by the server's own timers, and the causes named when
    # the probe failed (run.json's `why`).
    split: Decomposition | None = None
    causes: list[Cause] = Field(default_factory=list)


class RampStep(Part):
    """One step of the ramp: its load, judged by its own requests."""

    value: float  # the load, in the result's unit
    phase: str  # the step's phase in the ramp's run.json
    start_s: float  # since the ramp run's start
    status: Status  # pass, fail or inconclusive (too few requests to decide)
    samples: int
    slos: list[SloPoint] = Field(default_factory=list)


class Ramp(Part):
    """--ramp: one continuous run raising the load step by step before the
    probes (capacity/ramp.py); its failing step bounds the search above."""

    step_s: float
    loads: list[float]  # every step planned; `steps` holds those reached
    folder: str
    run_id: str | None = None
    elapsed_s: float
    trusted: bool  # False: ignored (the generator was the limit, the run failed)
    reasons: list[str] = Field(default_factory=list)
    steps: list[RampStep] = Field(default_factory=list)
    confirm: float | None = None  # the search's first load: the step below the failing one
    failed: float | None = None  # the lowest failing step's load


class Knee(Part):
    """What changed between the highest passing probe and the lowest failing
    one (capacity/knee.py)."""

    passed: float
    failed: float
    part: str | None = None  # queue | prefill | decode | remainder: the one that grew most
    moved: str | None = None  # e.g. "queue 4.9 → 310.2 ms"
    cause: str | None = None  # the failing probe's first named cause (slo/why.py)
    cause_title: str | None = None
    evidence: list[str] = Field(default_factory=list)
    # (passing, failing) probe
    energy_per_1k_output_tokens_j: tuple[float | None, float | None] = (None, None)
    cost_per_1m_output_tokens: tuple[float | None, float | None] = (None, None)


class Interval(Part):
    """capacity >= passed and < failed; either bound may be unknown."""

    passed: float | None
    failed: float | None
    width: float | None = None  # (failed - passed) / passed


class Headroom(Part):
    """Capacity over the production rate, as an interval."""

    production: float
    low: float | None  # passed / production
    high: float | None  # failed / production; None: unbounded


class Expectation(Part):
    """`--expect 'capacity >= 120 req/s'` and how the interval met it."""

    text: str
    subject: Literal["capacity", "headroom"]
    op: str
    threshold: float
    verdict: Verdict
    reason: str


class Settings(Part):
    start: float
    low: float
    high: float | None
    precision: float
    probe_s: float
    budget_s: float
    growth: float
    extensions: int
    strict: bool
    ramp_s: float | None = None  # --ramp: each step's length


class WorkloadRef(Part):
    name: str
    path: str
    sha256: str


class CapacityResult(Part):
    """What `capacity.json` holds; see docs/capacity.md."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["capacity"] = "capacity"
    loadkit_version: str
    started_at: str
    finished_at: str
    target: str
    workload: WorkloadRef
    unit: str  # RATE (req/s) or USERS
    conclusion: Conclusion
    summary: str  # the answer in one sentence
    capacity: Interval
    binding_slo: str | None = None  # the SLO that failed first, by name
    knee: Knee | None = None  # why it failed there
    settings: Settings
    spent_s: float
    probes: list[ProbeRecord]
    ramp: Ramp | None = None  # --ramp: the first answer the probes started from
    headroom: Headroom | None = None
    expectation: Expectation | None = None
    verdict: Verdict  # the expectation's, else whether the search reached an answer
    trusted: bool  # False: the generator (or something else) was the limit
    untrusted_reasons: list[str] = Field(default_factory=list)
    advice: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"
