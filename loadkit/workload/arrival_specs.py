"""Arrival processes as written in workload files (`arrival: {process: ...}`).

Each spec is data that knows its own arithmetic: its declared mean rate over
a phase, and itself with every rate (`scaled_rate`, capacity probes) or
every time (`scaled_time`, --time-scale) multiplied, so no caller asks which
process it holds. `loadkit.arrivals` turns a spec into arrival times. Time
inside a process is relative to the start of the phase it runs in.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, ConfigDict, Field, model_validator

from loadkit.workload.units import Seconds, Strict

MAX_RATE = 1e6  # req/s; far beyond one generator, and keeps the arithmetic finite
Rate = Annotated[float, Field(ge=0, le=MAX_RATE)]
PositiveRate = Annotated[float, Field(gt=0, le=MAX_RATE)]


class _Spec(Strict):
    model_config = ConfigDict(**Strict.model_config, populate_by_name=True)

    # How its arrival times are drawn (loadkit.arrivals.processes): exactly,
    # from independent gaps (a renewal process), or by thinning candidates at
    # the peak rate to the rate at each instant (a time-varying Poisson one).
    def exact_times(self, duration: float) -> Iterator[float] | None:
        return None

    def gaps(self, rng: random.Random) -> Callable[[], float] | None:
        return None

    def rate_at(self, t: float, duration: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} has no rate curve")

    def peak(self, duration: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} has no rate curve")

    def mean_rate(self, duration: float) -> float | None:
        """The declared average rate over a phase of `duration`, exactly; None
        where only a run can tell (closed loops, traces)."""
        return None

    def scaled_rate(self, f: float) -> Self:
        """This process with every rate (or its users) multiplied by f."""
        raise NotImplementedError

    def scaled_time(self, f: float) -> Self:
        """This process with its own times (periods, a day, steps, think time,
        a trace's offsets) multiplied by f; its rates unchanged."""
        return self


class _OneRate(_Spec):
    rate: PositiveRate

    def mean_rate(self, duration: float) -> float | None:
        return self.rate

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"rate": self.rate * f})


class Constant(_OneRate):
    """Evenly spaced arrivals."""

    process: Literal["constant"]

    def exact_times(self, duration: float) -> Iterator[float] | None:
        return (n / self.rate for n in range(math.ceil(duration * self.rate - 1e-9)))


class Poisson(_OneRate):
    """Exponential gaps: memoryless traffic from many independent users."""

    process: Literal["poisson"]

    def gaps(self, rng: random.Random) -> Callable[[], float] | None:
        return lambda: rng.expovariate(self.rate)


class Gamma(_OneRate):
    """Gamma gaps; `cv` is their coefficient of variation (1 = poisson, >1 bursty)."""

    process: Literal["gamma"]
    cv: float = Field(ge=0.05, le=50)

    def gaps(self, rng: random.Random) -> Callable[[], float] | None:
        shape = 1.0 / self.cv**2  # mean gap shape*scale = 1/rate
        return lambda: rng.gammavariate(shape, 1.0 / (self.rate * shape))


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

    def rate_at(self, t: float, duration: float = 0.0) -> float:
        on = t >= self.offset and (t - self.offset) % self.period < self.spike_length
        return self.spike_rate if on else self.base_rate

    def peak(self, duration: float) -> float:
        return max(self.spike_rate, self.base_rate)

    def mean_rate(self, duration: float) -> float | None:
        active = max(0.0, duration - self.offset)
        periods, rest = divmod(active, self.period)
        on = periods * self.spike_length + min(rest, self.spike_length)
        return (self.spike_rate * on + self.base_rate * (duration - on)) / duration

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"base_rate": self.base_rate * f,
                                       "spike_rate": self.spike_rate * f})

    def scaled_time(self, f: float) -> Self:
        return self.model_copy(update={"spike_length": self.spike_length * f,
                                       "period": self.period * f, "offset": self.offset * f})


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

    def peak(self, duration: float) -> float:
        return max(self.rates)

    def rate_at(self, t: float, duration: float = 0.0) -> float:
        n = len(self.rates)
        pos = (t % self.day) / self.day * n
        i = int(pos)
        a, b = self.rates[i % n], self.rates[(i + 1) % n]
        return a + (b - a) * (pos - i)

    def mean_rate(self, duration: float) -> float | None:
        days, rest = divmod(duration, self.day)
        whole_day = sum(self.rates) / len(self.rates)  # trapezoids around the circle
        n = 2000  # the last partial day: midpoint rule on a fine grid
        partial = sum(self.rate_at((i + 0.5) * rest / n) for i in range(n)) / n if rest else 0.0
        return (whole_day * days * self.day + partial * rest) / duration

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"rates": [r * f for r in self.rates]})

    def scaled_time(self, f: float) -> Self:
        return self.model_copy(update={"day": self.day * f})


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

    def rate_at(self, t: float, duration: float) -> float:
        return self.from_rate + (self.to_rate - self.from_rate) * t / duration

    def peak(self, duration: float) -> float:
        return max(self.from_rate, self.to_rate)

    def mean_rate(self, duration: float) -> float | None:
        return (self.from_rate + self.to_rate) / 2.0

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"from_rate": self.from_rate * f,
                                       "to_rate": self.to_rate * f})


class Step(_Spec):
    rate: Rate
    duration: Seconds = Field(gt=0)


class Steps(_Spec):
    """Piecewise-constant poisson rates; the last step holds to the phase's end."""

    process: Literal["steps"]
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def _some_traffic(self) -> Steps:
        if max(s.rate for s in self.steps) <= 0:
            raise ValueError("at least one step's rate must be > 0")
        return self

    def peak(self, duration: float) -> float:
        return max(s.rate for s in self.steps)

    def rate_at(self, t: float, duration: float = 0.0) -> float:
        end = 0.0
        for step in self.steps:
            end += step.duration
            if t < end:
                return step.rate
        return self.steps[-1].rate

    def mean_rate(self, duration: float) -> float | None:
        total, t = 0.0, 0.0
        for step in self.steps:
            span = min(step.duration, duration - t)
            if span <= 0:
                break
            total, t = total + step.rate * span, t + span
        return (total + self.steps[-1].rate * max(0.0, duration - t)) / duration

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"steps": [Step(rate=s.rate * f, duration=s.duration)
                                                 for s in self.steps]})

    def scaled_time(self, f: float) -> Self:
        return self.model_copy(update={"steps": [Step(rate=s.rate, duration=s.duration * f)
                                                 for s in self.steps]})


class Closed(_Spec):
    """Closed loop: `concurrency` users, each sending when its last answer came.

    For comparison with closed-loop tools only: a slow server slows the load,
    so latency is *not* corrected for coordinated omission (reported as such).
    """

    process: Literal["closed"]
    concurrency: int = Field(gt=0, le=100_000)
    think_time: Seconds = Field(default=0.0, ge=0)

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"concurrency": max(1, round(self.concurrency * f))})

    def scaled_time(self, f: float) -> Self:
        return self.model_copy(update={"think_time": self.think_time * f})


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

    def scaled_rate(self, f: float) -> Self:
        return self.model_copy(update={"rate_scale": self.rate_scale * f})

    def scaled_time(self, f: float) -> Self:
        return self.model_copy(update={"speedup": self.speedup / f})

    def bounds(self, first: float) -> tuple[float, float]:
        """The window [start, end) on the trace's own clock, its first
        request at `first`."""
        end = first + self.window.end if self.window.end is not None else math.inf
        return first + self.window.start, end


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
