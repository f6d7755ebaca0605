"""Workload files: typed models (models, scenarios, arrival_specs, slo_spec) and
YAML loading with errors that name file, line and key (loader)."""
