"""Workload files: typed models (models, scenarios, arrival_specs, slo_spec) and
YAML loading with errors that name file, line and key (loader)."""

from loadkit.workload.loader import LoadedWorkload, Overrides, load_workload
from loadkit.workload.models import Workload

__all__ = ["LoadedWorkload", "Overrides", "Workload", "load_workload"]
