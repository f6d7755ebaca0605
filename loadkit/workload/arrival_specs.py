"""Arrival processes as written in workload files (`arrival: {process: ...}`).

Each spec is pure data; `loadkit.arrivals` turns it into arrival times. Time
inside a process is relative to the start of the phase it runs in.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from loadkit.workload.units import Seconds, Strict

MAX_RATE = 1e6  # req/s; far beyond one generator, and keeps the arithmetic finite
Rate = Annotated[float, Field(ge=0, le=MAX_RATE)]
PositiveRate = Annotated[float, Field(gt=0, le=MAX_RATE)]


class _Spec(Strict):
    model_config = ConfigDict(**Strict.model_config, populate_by_name=True)


class Constant(_Spec):
    """Evenly spaced arrivals."""

    process: Literal["constant"]
    rate: PositiveRate


class Poisson(_Spec):
    """Exponential gaps: memoryless traffic from many independent users."""

    process: Literal["poisson"]
    rate: PositiveRate


class Gamma(_Spec):
    """Gamma gaps; `cv` is their coefficient of variation (1 = poisson, >1 bursty)."""

    process: Literal["gamma"]
    rate: PositiveRate
    cv: float = Field(ge=0.05, le=50)


class OnOff(_Spec):
    """A base rate with periodic spikes: `spike_rate` for `spike_length` every `period`."""

    process: Literal["onoff"]
    base_rate: Rate
    spike_rate: PositiveRate
    spike_length: Seconds = Field(gt=0)
    period: Seconds = Field(gt=0)
    offset: Seconds = Field(default=0.0, ge=0, description="start of the first spike")

    @model_validator(mode="after")
    def _fits(self) -> OnOff:
        if self.spike_length > self.period:
            raise ValueError("spike_length must not exceed period")
        return self


class Diurnal(_Spec):
    """A rate curve over one day, compressed into `day` seconds.

    `rates` are evenly spaced over the day (24 values = hourly) and joined
    linearly; the curve wraps around midnight.
    """

    process: Literal["diurnal"]
    rates: list[Rate] = Field(min_length=2)
    day: Seconds = Field(default=86400.0, gt=0)

    @model_validator(mode="after")
    def _some_traffic(self) -> Diurnal:
        if max(self.rates) <= 0:
            raise ValueError("at least one rate must be > 0")
        return self


class Ramp(_Spec):
    """Rate rising (or falling) linearly from `from` to `to` over the phase."""

    process: Literal["ramp"]
    from_rate: Rate = Field(alias="from")
    to_rate: Rate = Field(alias="to")

    @model_validator(mode="after")
    def _some_traffic(self) -> Ramp:
        if max(self.from_rate, self.to_rate) <= 0:
            raise ValueError("`from` or `to` must be > 0")
        return self


class Step(_Spec):
    rate: Rate
    duration: Seconds = Field(gt=0)


class Steps(_Spec):
    """Piecewise-constant poisson rates; the last step holds to the phase's end."""

    process: Literal["steps"]
    steps: list[Step] = Field(min_length=1)


class Closed(_Spec):
    """Closed loop: `concurrency` users, each sending when its last answer came.

    For comparison with closed-loop tools only: a slow server slows the load,
    so latency is *not* corrected for coordinated omission (reported as such).
    """

    process: Literal["closed"]
    concurrency: int = Field(gt=0, le=100_000)
    think_time: Seconds = Field(default=0.0, ge=0)


class Window(_Spec):
    """Seconds after the trace's first request; offsets count from `start`."""

    start: Seconds = Field(default=0.0, ge=0)
    end: Seconds | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Window:
        if self.end is not None and self.end <= self.start:
            raise ValueError("window end must be after its start")
        return self


class Trace(_Spec):
    """Replay a request trace: CSV (Azure LLM trace columns or `timestamp`),
    JSONL, or the Mooncake trace (prompt blocks shared between requests).

    The window is in seconds after the trace's first request, and offsets
    count from the window's start; `speedup` divides them (2 = twice as
    fast); `rate_scale` keeps each request with that probability (< 1) or
    repeats it (> 1) at the same instant, seeded.
    """

    process: Literal["trace"]
    path: str
    format: Literal["auto", "azure", "csv", "jsonl", "mooncake"] = "auto"
    speedup: float = Field(default=1.0, gt=0, le=1e6)
    rate_scale: float = Field(default=1.0, gt=0, le=1000)
    window: Window = Window()


def _poisson_by_default(value: object) -> object:
    """`{rate: 5}` means poisson: the usual model of many independent users."""
    if isinstance(value, dict) and "process" not in value:
        return {"process": "poisson", **value}
    return value


ArrivalSpec = Annotated[
    Annotated[Constant | Poisson | Gamma | OnOff | Diurnal | Ramp | Steps | Closed | Trace,
              Field(discriminator="process")],
    BeforeValidator(_poisson_by_default),
]
PROCESS_KINDS = ("constant", "poisson", "gamma", "onoff", "diurnal", "ramp", "steps",
                 "closed", "trace")
