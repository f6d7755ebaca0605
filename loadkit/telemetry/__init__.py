"""GPU and server telemetry: NVML sampling, Prometheus scraping, the agent.

The run starts ``collector.telemetry_session`` around the engine and puts
``derive.telemetry_section`` into run.json; ``derive.slo_values`` gives the
SLO evaluator the figures by scope. This package imports nothing at import
time (the workload models import ``telemetry.spec``), and pynvml and
prometheus_client only when a source starts.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {"telemetry_session": "collector", "telemetry_section": "derive",
            "slo_values": "derive", "TelemetrySpec": "spec"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(f"loadkit.telemetry.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
