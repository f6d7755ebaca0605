"""SLO files (`--slo FILE`): objectives kept apart from the traffic they judge.

    slos: ["ttft p99 < 300ms", "error_rate < 1%"]      # scope: all
    tenants: {acme: ["latency p99 < 2s"]}               # scope: tenant:acme
    phases: {spike: ["latency p99 < 5s"]}               # scope: phase:spike
    goodput: ["ttft <= 200ms", "tpot <= 50ms"]          # per-request rule

Errors name the file, line and key like a workload's.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from loadkit.errors import WorkloadError
from loadkit.workload.models import GoodputText, SloItem, Workload


class SloFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slos: list[SloItem] = []
    tenants: dict[str, list[SloItem]] = {}
    phases: dict[str, list[SloItem]] = {}
    goodput: list[GoodputText] = []


def with_slo_file(w: Workload, slo: SloFile, path: str) -> Workload:
    """The workload with the file's objectives added to its own."""
    # The shorthands (`arrival:`, `warmup` + `duration`) have implicit names
    # (`default`; `warmup`, `measure`): spell them out so the file can use them.
    if slo.tenants and not w.tenants:
        w = w.model_copy(update={"tenants": w.all_tenants, "arrival": None})
    if slo.phases and not w.phases:
        w = w.model_copy(update={"phases": w.phase_list, "duration": None, "warmup": 0.0})
    tenants = {t.name: t for t in w.tenants}
    phases = {p.name: p for p in w.phases}
    unknown = [f"tenants.{n}" for n in slo.tenants if n not in tenants]
    unknown += [f"phases.{n}" for n in slo.phases if n not in phases]
    if unknown:
        raise WorkloadError(path, [(None, key, "not in the workload") for key in unknown])
    if not (slo.slos or any(slo.tenants.values()) or any(slo.phases.values())):
        raise WorkloadError(path, [(1, "", "no objectives: give `slos`, `tenants` or `phases`")])
    if slo.goodput and w.goodput:
        raise WorkloadError(path, [(None, "goodput", "the workload already defines goodput")])
    w = w.model_copy(update={
        "goodput": [*w.goodput, *slo.goodput],
        "slos": [*w.slos, *slo.slos],
        "tenants": [t.model_copy(update={"slos": [*t.slos, *slo.tenants.get(t.name, [])]})
                    for t in w.tenants],
        "phases": [p.model_copy(update={"slos": [*p.slos, *slo.phases.get(p.name, [])]})
                   for p in w.phases]})
    try:
        w.check_slos(w.scenario_scopes())
    except ValueError as exc:
        raise WorkloadError(path, [(None, "slos", str(exc))]) from None
    return w
