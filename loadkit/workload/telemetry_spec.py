"""The `telemetry:` block of a workload file (pydantic, strict).

    telemetry:
      nvml: auto                 # auto | true | false: sample this machine's GPUs
      interval: 250ms            # NVML sampling period
      agent: http://gpu-host:9400        # a `loadkit agent` beside a remote server
      agent_token: ${LOADKIT_AGENT_TOKEN}  # resolved in memory, never written out
      prometheus:
        - {url: http://gpu-host:9400/metrics, metrics: ["DCGM_FI_DEV_*"], name: dcgm}
      price_per_gpu_hour: 2.50   # for cost per 1k requests / 1M output tokens
      gpus: 8                    # GPUs the price applies to (default: those sampled)

Nothing here does I/O; `${VAR}` references are resolved by the collector.
JSON dumps (run.json) show URLs without credentials and a literal token as `***`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_serializer, field_validator

from loadkit import envrefs
from loadkit.urls import base_url, http_url, without_credentials
from loadkit.workload.units import Seconds, Strict


def _check_url(v: str) -> str:
    return http_url(v, "http://127.0.0.1:9400")


class PrometheusTarget(Strict):
    """One `/metrics` URL to scrape during the run."""

    url: str
    metrics: list[str] | None = None  # names or globs (`vllm:*`); None: the known set
    name: str | None = Field(default=None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    interval: Seconds | None = Field(default=None, ge=0.05, le=3600)  # default max(1s, interval)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_url(v)

    # JSON dumps are outputs; a Python dump is the loader's round trip after
    # --duration/--time-scale and must keep what the requests send.
    @field_serializer("url", when_used="json")
    def _public_url(self, v: str) -> str:
        return without_credentials(v)


class TelemetrySpec(Strict):
    """GPU and server telemetry for a run; every source is optional."""

    nvml: bool | Literal["auto"] = "auto"
    interval: Seconds = Field(default=0.25, ge=0.01, le=60)
    agent: str | None = None
    agent_token: str | None = Field(default=None, min_length=1)
    agent_interval: Seconds = Field(default=1.0, ge=0.05, le=60)  # how often to poll it
    prometheus: list[PrometheusTarget] = []
    price_per_gpu_hour: float | None = Field(default=None, ge=0)
    gpus: int | None = Field(default=None, gt=0)
    scrape_simulator: bool = True  # the embedded simulator's /metrics, when it is the target

    @field_validator("agent")
    @classmethod
    def _agent_url(cls, v: str | None) -> str | None:
        return None if v is None else base_url(v, "http://127.0.0.1:9400")  # + /v1/samples

    @field_serializer("agent", when_used="json")
    def _public_agent(self, v: str | None) -> str | None:
        return None if v is None else without_credentials(v)

    @field_serializer("agent_token", when_used="json")
    def _masked_token(self, v: str | None) -> str | None:
        """Outputs keep a `${VAR}` reference as written, never a literal token."""
        return v if v is None or envrefs.is_reference(v) else "***"

    def env_refs(self) -> set[str]:
        """Names of the `${ENV_VAR}`s the token needs."""
        return envrefs.names(self.agent_token)
