"""Typed models of a workload file (pydantic), validated strictly.

Unknown keys are errors (a typo must not silently drop an SLO). Header values
may hold `${ENV_VAR}` references; they are kept as written here and resolved
only when a request is built, so secrets never reach any output.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from loadkit import envrefs
from loadkit.sim.config import SimConfig
from loadkit.urls import base_url
from loadkit.workload.arrival_specs import ArrivalSpec
from loadkit.workload.scenarios import Abandon, GenerationScenario, KServeScenario, Scenario
from loadkit.workload.slo_spec import (
    END_OF_RUN_METRICS,
    Condition,
    Objective,
    check_decidable,
    parse_condition,
    parse_objective,
    scopes_for,
)
from loadkit.workload.telemetry_spec import TelemetrySpec
from loadkit.workload.units import Bytes, Seconds, Strict

NAME = r"^[A-Za-z0-9_-]+$"  # names become parts of series keys and .hlog tags


def _objective_text(text: str) -> str:
    parse_objective(text)  # raises ValueError at this item's key path
    return text


ObjectiveText = Annotated[str, AfterValidator(_objective_text)]


def _goodput_text(text: str) -> str:
    parse_condition(text)
    return text


GoodputText = Annotated[str, AfterValidator(_goodput_text)]


class ErrorAt(ValueError):
    """A check across keys that knows where in the file it failed: the
    loader points its message at that key's line (a plain ValueError from a
    model's own check would point at the top of the file)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class SloEntry(Strict):
    """The mapping form of an SLO: the objective plus how it is enforced."""

    slo: ObjectiveText
    abort: bool = False  # judged while the run goes: a clear breach stops it (exit 1)
    after: Seconds = Field(default=10.0, ge=0)  # no abort before this much run time
    scenario: str | None = None  # narrow the scope to one scenario (top-level SLOs only)

    def objective(self, scope: str) -> Objective:
        if self.scenario is not None:
            scope = f"scenario:{self.scenario}"
        o = parse_objective(self.slo, scope)
        if self.abort and (o.metric in END_OF_RUN_METRICS or o.metric.startswith("prom.")
                           or o.trend is not None):
            what = f"{o.metric} trend" if o.trend is not None else o.metric
            raise ValueError(f"{what} is known only at the end of a run; it cannot abort")
        if self.abort and o.quantile is None:
            # Only a percentile carries the confidence interval that tells a
            # clear breach from noise in the first minutes of a run.
            raise ValueError("only percentile SLOs (e.g. 'latency p99 < 2s') can abort")
        return o.model_copy(update={"abort": self.abort, "abort_after_s": self.after})


def _slo_item(value: Any) -> str | SloEntry:
    """A line, or the mapping form; one error at the item's own key path."""
    if isinstance(value, str):
        return _objective_text(value)
    if isinstance(value, dict):
        try:
            return SloEntry.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(k) for k in err["loc"])
            raise ValueError(f"{where}: {err['msg']}" if where else err["msg"]) from None
    raise ValueError("an SLO is a line such as 'latency p99 < 500ms' or a mapping "
                     "with `slo:` (and `abort`, `after`, `scenario`)")


SloItem = Annotated[Any, PlainValidator(_slo_item)]  # str | SloEntry


def objective_of(item: SloItem, scope: str) -> Objective:
    return item.objective(scope) if isinstance(item, SloEntry) else parse_objective(item, scope)


class Timeouts(Strict):
    connect: Seconds = Field(default=5.0, gt=0)
    first_byte: Seconds = Field(default=60.0, gt=0)
    total: Seconds = Field(default=300.0, gt=0)


class FailFast(Strict):
    """Stop a run the target refuses: when at least `share` of the newest
    `requests` finished requests (or of those in the last `within`, at low
    rates) got HTTP 4xx (engine/failfast.py)."""

    share: float = Field(default=0.9, gt=0, le=1)
    requests: int = Field(default=100, gt=0)
    within: Seconds = Field(default=30.0, gt=0)


class Client(Strict):
    """How the load-path client talks to the target; defaults a user can trust."""

    timeouts: Timeouts = Timeouts()
    # Arrivals beyond this are counted `dropped`; it also bounds memory when a
    # target stalls under a high rate.
    max_in_flight: int = Field(default=10_000, gt=0)
    connections: int = Field(default=1000, gt=0)
    insecure: bool = False
    ca_bundle: str | None = None
    follow_redirects: bool = False  # same-origin redirects only
    max_response_bytes: Bytes = Field(default=16 * 2**20, gt=0)
    # lean: loadkit's own HTTP/1.1 client (least time between clock and socket);
    # aiohttp: aiohttp's, as a cross-check.
    transport: Literal["lean", "aiohttp"] = "lean"
    fail_fast: FailFast | None = FailFast()  # false: never stop for errors
    # One unmeasured request per (tenant, scenario) before the clock starts, to
    # catch a refusing target; it also wakes the target: off to measure a cold start.
    probe: bool = True
    # After the schedule ends, in-flight requests get this long to finish; then
    # they are cancelled and counted as failures (error kind `unfinished`).
    drain: Seconds = Field(default=30.0, ge=0)

    @field_validator("fail_fast", mode="before")
    @classmethod
    def _switch(cls, v: Any) -> Any:
        return {True: {}, False: None}.get(v, v) if isinstance(v, bool) else v


class Tenant(Strict):
    """One customer: its own traffic, scenario mix, identity and SLOs."""

    name: str = Field(min_length=1, pattern=NAME)
    arrival: ArrivalSpec | None = None  # default for every phase
    phases: dict[str, ArrivalSpec | None] = {}  # per-phase override; null = silent
    scenarios: list[str] | None = None  # names; None = every scenario, by weight
    headers: dict[str, str] = {}
    api_key: str | None = None  # e.g. ${ACME_KEY}: sent as `Authorization: Bearer ...`
    slos: list[SloItem] = []
    # Its clients leave so, in each of its scenarios (in place of the scenario's own rule).
    abandon: Abandon | None = None

    @field_validator("scenarios")
    @classmethod
    def _some_scenario(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not v:  # [] read as "every scenario" once, silently
            raise ValueError("an empty list sends nothing: name scenarios, or leave "
                             "`scenarios` out for every scenario")
        return v


class Phase(Strict):
    """A stretch of the run with its own traffic; warm-up phases are not judged."""

    name: str = Field(min_length=1, pattern=NAME)
    duration: Seconds = Field(gt=0)
    warmup: bool = False
    arrival: ArrivalSpec | None = None  # for tenants without their own for this phase
    slos: list[SloItem] = []


class Workload(Strict):
    """A whole workload file."""

    name: str = "workload"
    seed: int = 0
    duration: Seconds | None = Field(default=None, gt=0)  # shorthand: one phase
    warmup: Seconds = Field(default=0.0, ge=0)
    phases: list[Phase] = []
    target: str | None = None  # base URL; None starts the embedded simulator
    simulator: dict[str, Any] = {}  # SimConfig fields when the simulator is used
    interval: Seconds = Field(default=1.0, ge=0.1)
    # A tokenizer.json (path from this file) or a model in the local Hugging
    # Face cache: prompts of exactly N tokens, streamed text counted in tokens.
    tokenizer: str | None = None
    lateness_bound: Seconds = Field(default=0.010, gt=0)
    client: Client = Client()
    arrival: ArrivalSpec | None = None  # shorthand for one tenant named "default"
    scenarios: list[Scenario] = Field(min_length=1)
    tenants: list[Tenant] = []
    slos: list[SloItem] = []
    # Per-request rules: a request is "good" when it answered, passed its
    # checks and meets every one (`goodput >= 95%` judges the share).
    goodput: list[GoodputText] = []
    # End the run as soon as its verdict is decided (always-valid test, checked
    # after every interval): the measure phase's length becomes a maximum.
    stop_when_decided: bool = False
    # `cold`: reset the server's prefix cache before the clock (vLLM's
    # /reset_prefix_cache, SGLang's /flush_cache); a run stops if it cannot.
    cache: Literal["cold"] | None = None
    telemetry: TelemetrySpec | None = None  # GPU and server telemetry (loadkit/telemetry/)

    @model_validator(mode="before")
    @classmethod
    def _inline_simulator(cls, data: Any) -> Any:
        """`target: {simulator: {...}}` is the embedded simulator, configured inline."""
        if isinstance(data, dict) and isinstance(data.get("target"), dict) \
                and set(data["target"]) == {"simulator"}:
            if data.get("simulator"):
                raise ValueError("give simulator settings once: in `target` or `simulator`")
            data = {**data, "target": None, "simulator": data["target"]["simulator"] or {}}
        return data

    @field_validator("simulator")
    @classmethod
    def _sim(cls, v: dict[str, Any]) -> dict[str, Any]:
        SimConfig.from_mapping(v)  # ValueError names the bad setting
        return v

    @field_validator("target")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return base_url(v) if v is not None else v

    @model_validator(mode="after")
    def _consistent(self) -> Workload:
        if (self.duration is None) == (not self.phases):
            raise ValueError("give either `duration` (with optional `warmup`) or `phases`")
        if self.arrival is not None and self.tenants:
            raise ValueError("give `arrival` or `tenants`, not both")
        if self.arrival is None and not self.tenants and not any(
                p.arrival for p in self.phase_list):
            raise ValueError("give `arrival` (one tenant), `tenants`, or phases with arrivals")
        names = [s.name for s in self.scenarios]
        _unique("scenario", names)
        _unique("tenant", [t.name for t in self.tenants])
        phases = [p.name for p in self.phase_list]
        _unique("phase", phases)
        if all(p.warmup for p in self.phase_list):
            raise ValueError("every phase is a warm-up: nothing would be measured")
        self.check_slos(self.scenario_scopes())
        if self.stop_when_decided:
            try:
                check_decidable(self.objectives())
            except ValueError as exc:
                raise ErrorAt(("stop_when_decided",), str(exc)) from None
        for i, t in enumerate(self.all_tenants):
            at: tuple[str | int, ...] = ("tenants", i) if self.tenants else ()
            for s in t.scenarios or []:
                if s not in names:
                    raise ErrorAt((*at, "scenarios"),
                                  f"tenant {t.name!r} names unknown scenario {s!r}")
            if t.abandon is not None:
                _check_abandon(t, [s for s in self.scenarios
                                   if t.scenarios is None or s.name in t.scenarios],
                               (*at, "abandon"))
            for p in t.phases:
                if p not in phases:
                    raise ErrorAt((*at, "phases", p), f"tenant {t.name!r} names unknown phase "
                                  f"{p!r} (the phases: {', '.join(phases)})")
            for j, phase in enumerate(self.phase_list):
                if self.arrival_for(t, phase) is None and phase.name not in t.phases:
                    if not at:  # one tenant: the workload's
                        raise ErrorAt(("phases", j), f"phase {phase.name!r} has no arrival "
                                      "process: give it an `arrival`, or the workload one")
                    raise ErrorAt(at, f"tenant {t.name!r} has no arrival process in phase "
                                      f"{phase.name!r}: give the tenant an `arrival`, or the "
                                      "phase one")
        measured = [p for p in self.phase_list if not p.warmup]
        if not any(_sends(self.arrival_for(t, p), p.duration)
                   for t in self.all_tenants for p in measured):
            raise ValueError("every tenant is silent (null, or a rate of 0 all through) in every "
                             "measured phase (" + ", ".join(p.name for p in measured)
                             + "): no request would be sent, nothing measured")
        return self

    @property
    def phase_list(self) -> list[Phase]:
        """The phases, with `warmup` + `duration` read as two of them."""
        if self.phases:
            return list(self.phases)
        out = [Phase(name="warmup", duration=self.warmup, warmup=True)] if self.warmup else []
        return out + [Phase(name="measure", duration=self.duration)]

    @property
    def measured_s(self) -> float:
        return sum(p.duration for p in self.phase_list if not p.warmup)

    @property
    def all_tenants(self) -> list[Tenant]:
        if self.tenants:
            return list(self.tenants)
        return [Tenant(name="default", arrival=self.arrival)]

    def arrival_for(self, tenant: Tenant, phase: Phase) -> ArrivalSpec | None:
        """Tenant's override for the phase, else the phase's, else the tenant's."""
        if phase.name in tenant.phases:
            return tenant.phases[phase.name]
        return phase.arrival or tenant.arrival

    def objectives(self) -> list[Objective]:
        """Each SLO once: one given twice (in the workload and again in an
        `--slo` file) is one objective, judged once."""
        out = [objective_of(s, "all") for s in self.slos]
        for t in self.tenants:
            out += [objective_of(s, f"tenant:{t.name}") for s in t.slos]
        for p in self.phase_list:
            out += [objective_of(s, f"phase:{p.name}") for s in p.slos]
        return list(dict.fromkeys(out))

    def goodput_rule(self) -> list[Condition]:
        return [parse_condition(c) for c in self.goodput]

    def scenario_scopes(self) -> list[str]:
        """The scenario names series are kept under: each scenario's, and a
        session's later turns as "<name>:later"."""
        names = [s.name for s in self.scenarios]
        return names + [f"{s.name}:later" for s in self.scenarios
                        if getattr(s, "session", None) is not None]

    def slo_places(self) -> list[tuple[tuple[str | int, ...], SloItem, str]]:
        """Each SLO as written: (its key path in the file, the item, its scope)."""
        out: list[tuple[tuple[str | int, ...], SloItem, str]] = [
            (("slos", i), s, "all") for i, s in enumerate(self.slos)]
        for j, t in enumerate(self.tenants):
            out += [(("tenants", j, "slos", i), s, f"tenant:{t.name}")
                    for i, s in enumerate(t.slos)]
        for k, p in enumerate(self.phases):
            out += [(("phases", k, "slos", i), s, f"phase:{p.name}")
                    for i, s in enumerate(p.slos)]
        return out

    def check_slos(self, scenarios: list[str]) -> None:
        """Checks across an SLO and the rest of the file, each failure located
        at its SLO (ErrorAt: the loader names its line and key)."""
        phases = [p.name for p in self.phase_list]
        seen: dict[str, Objective] = {}
        for loc, s, scope in self.slo_places():
            if isinstance(s, SloEntry) and s.scenario:
                if scope != "all":
                    raise ErrorAt((*loc, "scenario"), "`scenario:` narrows top-level SLOs only")
                if s.scenario not in scenarios:
                    raise ErrorAt((*loc, "scenario"), f"SLO {s.slo!r} names unknown scenario "
                                  f"{s.scenario!r}")
            try:
                o = objective_of(s, scope)  # raises for entries that cannot abort
            except ValueError as exc:
                raise ErrorAt(loc, str(exc)) from None
            kind = o.scope.split(":")[0]
            if (allowed := scopes_for(o.metric)) is not None and kind not in allowed:
                where = {"all": "top-level `slos`", "tenant": "a tenant's `slos`",
                         "phase": "a phase's `slos`"}
                raise ErrorAt(loc, f"{o.metric} cannot be judged per {kind}: give it in "
                              f"{' or '.join(where[k] for k in allowed)}")
            if o.name in seen and seen[o.name] != o:
                raise ErrorAt(loc, f"SLO {o.name} is given twice with different settings "
                              "(abort, after): give it once")
            seen[o.name] = o
            if o.metric == "goodput" and not self.goodput:
                raise ErrorAt(loc, "a goodput SLO needs `goodput:` rules, e.g. "
                              "goodput: ['ttft <= 200ms', 'tpot <= 50ms']")
            if o.after is not None and o.after not in phases:
                raise ErrorAt(loc, f"SLO {o.text!r} names unknown phase {o.after!r} "
                              f"(phases: {', '.join(phases)})")
            window_s = o.trend.window_s if o.trend is not None else o.window_s
            if window_s is not None and window_s < self.interval:
                raise ErrorAt(loc, f"SLO {o.text!r}: its window is shorter than the "
                              f"{self.interval:g}s interval")
            if window_s is not None and abs(window_s / self.interval
                                            - round(window_s / self.interval)) > 1e-6:
                raise ErrorAt(loc, f"SLO {o.text!r}: a window is a whole number of "
                              f"{self.interval:g}s intervals")

    def env_refs(self) -> set[str]:
        """Names of every `${ENV_VAR}` the run will need (requests, agent token)."""
        return {name for name, _where in self.env_ref_places()}

    def env_ref_places(self) -> list[tuple[str, tuple[str | int, ...]]]:
        """Each `${ENV_VAR}` the run will need, with where the file names it
        (its key path, as pydantic locates errors)."""
        texts: list[tuple[str, tuple[str | int, ...]]] = [
            (v, ("scenarios", i, "headers", k)) for i, s in enumerate(self.scenarios)
            for k, v in s.headers.items()]
        for i, t in enumerate(self.tenants):
            texts += [(v, ("tenants", i, "headers", k)) for k, v in t.headers.items()]
            if t.api_key:
                texts.append((t.api_key, ("tenants", i, "api_key")))
        if self.telemetry is not None and self.telemetry.agent_token:
            texts.append((self.telemetry.agent_token, ("telemetry", "agent_token")))
        return [(name, where) for text, where in texts for name in sorted(envrefs.names(text))]


def _sends(arrival: ArrivalSpec | None, duration: float) -> bool:
    """Whether `arrival` sends anything over a phase of `duration` (a trace or a
    closed loop always may; an on/off spike past the phase's end at a base rate
    of 0 does not)."""
    if arrival is None:
        return False
    rate = arrival.mean_rate(duration)
    return rate is None or rate > 0


def _check_abandon(t: Tenant, scenarios: list[Scenario], at: tuple[str | int, ...]) -> None:
    """A tenant's `abandon` applies in its scenarios that generate text or
    infer (the dialects, KServe), as the engine applies it, and not in the
    others (embeddings, rerank, plain HTTP); its token rules read streams."""
    a = t.abandon
    generating = [s for s in scenarios if isinstance(s, GenerationScenario | KServeScenario)]
    if not generating:
        raise ErrorAt(at, f"tenant {t.name!r}: `abandon` applies to text generation and "
                      "KServe, and none of its scenarios is either")
    for s in generating:
        streams = s.stream and not (isinstance(s, KServeScenario) and s.mode != "generate")
        if a is not None and (a.read_tokens or a.on_tool_call) and not streams:
            raise ErrorAt(at, f"tenant {t.name!r}: abandon.read_tokens and on_tool_call read "
                          f"a stream: scenario {s.name!r} needs stream: true"
                          + (" and mode: generate" if isinstance(s, KServeScenario) else ""))
        if a is not None and a.on_tool_call and isinstance(s, KServeScenario):
            raise ErrorAt(at, f"tenant {t.name!r}: abandon.on_tool_call: KServe answers "
                          f"(scenario {s.name!r}) call no tools")


def _unique(what: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique; repeated: {', '.join(dupes)}")
