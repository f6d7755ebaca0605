"""Workload files: typed models, SLO objectives and YAML loading."""

from loadkit.workload.loader import LoadedWorkload, Overrides, load_workload
from loadkit.workload.models import HttpScenario, OpenAIScenario, Tenant, Workload
from loadkit.workload.slo_spec import Objective, parse_objective

__all__ = ["HttpScenario", "LoadedWorkload", "Objective", "OpenAIScenario", "Overrides",
           "Tenant", "Workload", "load_workload", "parse_objective"]
