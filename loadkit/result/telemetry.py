"""run.json's `telemetry`: GPU and server telemetry sampled while the load
ran (loadkit.telemetry derives it)."""

from __future__ import annotations

from pydantic import Field

from loadkit.result.parts import Part


class TelemetrySource(Part):
    kind: str  # nvml | agent | prometheus
    target: str
    status: str  # ok | unavailable | failed
    reason: str | None = None
    samples: int = 0
    errors: int = 0
    last_error: str | None = None  # of a source that failed after it had sampled


class Gpu(Part):
    """A GPU the samplers saw (NVML here or through the agent)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    memory_total_mib: float | None = None
    unsupported: list[str] = Field(default_factory=list)  # fields the driver does not report
    source: str | None = None  # nvml | agent


class TelemetrySeries(Part):
    unit: str
    kind: str
    metric: str
    labels: dict[str, str] = Field(default_factory=dict)
    points: list[tuple[float, float]]


# Derived figures by name (`gpu.util.mean`, `energy_per_request`, `energy_source`,
# `prom.<metric>.max`, ...): the names are data, open-ended as the scraped metrics.
Figures = dict[str, float | int | str | None]


class Telemetry(Part):
    """GPU and server telemetry sampled while the load ran."""

    available: bool  # real GPU readings were taken
    reason: str = ""
    gpu_source: str | None = None
    simulated: bool = False  # the figures come from the embedded simulator's gauges
    sources: list[TelemetrySource] = Field(default_factory=list)
    interval_s: float | None = None
    gpus: list[Gpu] = Field(default_factory=list)
    price_per_gpu_hour: float | None = None
    gpus_priced: int | None = None
    series: dict[str, TelemetrySeries] = Field(default_factory=dict)
    per_interval: list[Figures] = Field(default_factory=list)
    phases: dict[str, Figures] = Field(default_factory=dict)
    all: Figures = Field(default_factory=dict)
