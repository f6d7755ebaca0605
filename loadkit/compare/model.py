"""Comparison: the typed model of `compare.json` (its own `schema_version` 1).

pydantic models, frozen, like RunResult's parts: compare.json is a
documented, versioned output as run.json is (docs/run-json.md), so it gets
the same treatment: one declared shape, a JSON Schema for free
(`Comparison.model_json_schema()`), and a saved compare.json can be read
back validated (`Comparison.model_validate_json`). Validating the ~50 rows
of a comparison costs nothing next to decoding the histograms.

compare.json is written with `json.dumps(comparison.document())`, not
pydantic's own JSON, so that its bytes stay what they were (ASCII escapes,
Python's float repr).
"""

from __future__ import annotations

import enum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict

from loadkit.result.model import RunResult, Scope, Verdict

SCHEMA_VERSION: Final = 1


class Decision(enum.StrEnum):
    """A row's decision; the comparison's verdict is one of the first four."""

    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    NO_CHANGE = "no_change"
    INCONCLUSIVE = "inconclusive"
    INSUFFICIENT_SAMPLES = "insufficient_samples"  # rows only


class Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Row(Part):
    """One statistic of one series (metric × scope), candidate against base.

    Times in ms; for `error_rate` (stat `rate`, unit `%`) base and cand are
    fractions and the change, its interval and the tolerance are
    percentage points."""

    metric: str
    scope: Scope
    stat: str
    base: float | None
    cand: float | None
    change_pct: float | None
    ci_low_pct: float | None  # None: unbounded below
    ci_high_pct: float | None  # None: unbounded above
    p_value: float | None  # Mann-Whitney U (two-sided); two-proportion z for error_rate
    tolerance_pct: float
    decision: Decision
    samples_base: int
    samples_cand: int
    unit: str = "ms"


class RunIdentity(Part):
    """Which run a side of the comparison is."""

    run_id: str
    workload: str
    started_at: str
    target: str
    verdict: Verdict

    @classmethod
    def of(cls, run: RunResult) -> RunIdentity:
        return cls(run_id=run.run_id, workload=run.workload.name, started_at=run.started_at,
                   target=run.target, verdict=run.verdict)


class Comparison(Part):
    """What `compare.json` holds; see docs/run-json.md."""

    schema_version: Literal[1] = SCHEMA_VERSION
    kind: Literal["comparison"] = "comparison"
    verdict: Decision
    alpha: float
    trusted: bool  # both runs were
    warnings: list[str]
    base: RunIdentity
    cand: RunIdentity
    rows: list[Row]

    def document(self) -> dict[str, Any]:
        """compare.json as plain JSON values, in the documented key order."""
        return self.model_dump(mode="json")
