"""Typed models of a workload file (pydantic), validated strictly.

Unknown keys are errors (a typo must not silently drop an SLO). Header values
may hold `${ENV_VAR}` references; they are kept as written here and resolved
only when a request is built, so secrets never reach any output.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      field_validator, model_validator)

from loadkit.sim.config import SimConfig
from loadkit.workload.slo_spec import Objective, parse_objective
from loadkit.workload.units import parse_duration, parse_size

Seconds = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_size)]
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _objective_text(text: str) -> str:
    parse_objective(text)  # raises ValueError at this item's key path
    return text


ObjectiveText = Annotated[str, AfterValidator(_objective_text)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arrival(_Strict):
    """Open-loop arrival process of one tenant."""

    process: Literal["constant", "poisson"] = "poisson"
    rate: float = Field(gt=0, description="requests per second")


class Timeouts(_Strict):
    connect: Seconds = Field(default=5.0, gt=0)
    first_byte: Seconds = Field(default=60.0, gt=0)
    total: Seconds = Field(default=300.0, gt=0)


class Client(_Strict):
    """How the load-path client talks to the target; defaults a user can trust."""

    timeouts: Timeouts = Timeouts()
    max_in_flight: int | None = Field(default=None, gt=0)
    connections: int = Field(default=1000, gt=0)
    insecure: bool = False
    ca_bundle: str | None = None
    follow_redirects: bool = False
    max_response_bytes: Bytes = Field(default=16 * 2**20, gt=0)


class _Scenario(_Strict):
    name: str = Field(min_length=1)
    weight: float = Field(default=1.0, gt=0)
    headers: dict[str, str] = {}


class OpenAIScenario(_Scenario):
    """An OpenAI-compatible chat or completions request."""

    kind: Literal["openai-chat", "openai-completions"]
    stream: bool = True
    model: str = "loadkit-sim"
    prompt_tokens: int = Field(default=128, gt=0)
    max_tokens: int = Field(default=64, gt=0)
    path: str | None = None  # defaults by kind

    @property
    def request_path(self) -> str:
        if self.path:
            return self.path
        return "/v1/chat/completions" if self.kind == "openai-chat" else "/v1/completions"


class HttpScenario(_Scenario):
    """Any JSON HTTP request; success is a 2xx status."""

    kind: Literal["http"]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "POST"
    path: str = "/"
    body: Any = None

    @property
    def request_path(self) -> str:
        return self.path


Scenario = Annotated[Union[OpenAIScenario, HttpScenario], Field(discriminator="kind")]


class Tenant(_Strict):
    name: str = Field(min_length=1)
    arrival: Arrival
    scenarios: list[str] | None = None  # names; None = every scenario, by weight
    headers: dict[str, str] = {}
    slos: list[ObjectiveText] = []


class Workload(_Strict):
    """A whole workload file."""

    name: str = "workload"
    seed: int = 0
    duration: Seconds = Field(gt=0)
    warmup: Seconds = Field(default=0.0, ge=0)
    target: str | None = None  # base URL; None starts the embedded simulator
    simulator: dict[str, Any] = {}  # SimConfig fields when the simulator is used
    interval: Seconds = Field(default=1.0, gt=0)
    lateness_bound: Seconds = Field(default=0.010, gt=0)
    client: Client = Client()
    arrival: Arrival | None = None  # shorthand for one tenant named "default"
    scenarios: list[Scenario] = Field(min_length=1)
    tenants: list[Tenant] = []
    slos: list[ObjectiveText] = []

    @field_validator("simulator")
    @classmethod
    def _sim(cls, v: dict[str, Any]) -> dict[str, Any]:
        SimConfig.from_mapping(v)  # ValueError names the bad setting
        return v

    @field_validator("target")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL such as http://127.0.0.1:8000")
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _consistent(self) -> "Workload":
        if self.arrival is None and not self.tenants:
            raise ValueError("give either `arrival` (one tenant) or `tenants`")
        if self.arrival is not None and self.tenants:
            raise ValueError("give `arrival` or `tenants`, not both")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise ValueError("scenario names must be unique")
        if len({t.name for t in self.tenants}) != len(self.tenants):
            raise ValueError("tenant names must be unique")
        for t in self.tenants:
            for s in t.scenarios or []:
                if s not in names:
                    raise ValueError(f"tenant {t.name!r} names unknown scenario {s!r}")
        return self

    @property
    def all_tenants(self) -> list[Tenant]:
        if self.tenants:
            return list(self.tenants)
        return [Tenant(name="default", arrival=self.arrival)]  # type: ignore[arg-type]

    def objectives(self) -> list[Objective]:
        out = [parse_objective(s) for s in self.slos]
        for t in self.tenants:
            out += [parse_objective(s, tenant=t.name) for s in t.slos]
        return out

    def env_refs(self) -> set[str]:
        """Names of every `${ENV_VAR}` the requests will need."""
        texts = [v for s in self.scenarios for v in s.headers.values()]
        texts += [v for t in self.tenants for v in t.headers.values()]
        return {name for text in texts for name in ENV_REF.findall(text)}
