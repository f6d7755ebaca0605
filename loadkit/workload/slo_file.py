"""SLO files (`--slo FILE`): objectives kept apart from the traffic they judge.

    slos: ["ttft p99 < 300ms", "error_rate < 1%"]      # scope: all
    tenants: {acme: ["latency p99 < 2s"]}               # scope: tenant:acme
    phases: {spike: ["latency p99 < 5s"]}               # scope: phase:spike
    goodput: ["ttft <= 200ms", "tpot <= 50ms"]          # per-request rule

Errors name the file, line and key like a workload's.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict

from loadkit.errors import WorkloadError
from loadkit.workload.models import ErrorAt, GoodputText, SloItem, Workload


class SloFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slos: list[SloItem] = []
    tenants: dict[str, list[SloItem]] = {}
    phases: dict[str, list[SloItem]] = {}
    goodput: list[GoodputText] = []


Where = Callable[[tuple[str | int, ...], str], tuple[int | None, str, str]]


def _unlocated(loc: tuple[str | int, ...], msg: str) -> tuple[int | None, str, str]:
    return None, ".".join(map(str, loc)), msg


def with_slo_file(w: Workload, slo: SloFile, path: str, where: Where = _unlocated) -> Workload:
    """The workload with the file's objectives added to its own; `where`
    turns a key path of the SLO file into its (line, key, message)."""
    # The shorthands (`arrival:`, `warmup` + `duration`) have implicit names
    # (`default`; `warmup`, `measure`): spell them out so the file can use them.
    if slo.tenants and not w.tenants:
        w = w.model_copy(update={"tenants": w.all_tenants, "arrival": None})
    if slo.phases and not w.phases:
        w = w.model_copy(update={"phases": w.phase_list, "duration": None, "warmup": 0.0})
    tenants = {t.name: t for t in w.tenants}
    phases = {p.name: p for p in w.phases}
    unknown: list[tuple[str | int, ...]] = [("tenants", n) for n in slo.tenants
                                             if n not in tenants]
    unknown += [("phases", n) for n in slo.phases if n not in phases]
    if unknown:
        raise WorkloadError(path, [where(loc, "not in the workload") for loc in unknown])
    if not (slo.slos or any(slo.tenants.values()) or any(slo.phases.values())):
        raise WorkloadError(path, [(1, "", "no objectives: give `slos`, `tenants` or `phases`")])
    if slo.goodput and w.goodput:
        raise WorkloadError(path, [where(("goodput",), "the workload already defines goodput")])
    own: dict[tuple[str | int, ...], int] = {
        ("slos",): len(w.slos), **{("tenants", t.name): len(t.slos) for t in w.tenants},
        **{("phases", p.name): len(p.slos) for p in w.phases}}
    w = w.model_copy(update={
        "goodput": [*w.goodput, *slo.goodput],
        "slos": [*w.slos, *slo.slos],
        "tenants": [t.model_copy(update={"slos": [*t.slos, *slo.tenants.get(t.name, [])]})
                    for t in w.tenants],
        "phases": [p.model_copy(update={"slos": [*p.slos, *slo.phases.get(p.name, [])]})
                   for p in w.phases]})
    try:
        w.check_slos(w.scenario_scopes())
    except ErrorAt as exc:  # at an SLO of the merged lists: this file's, past the workload's
        loc = exc.loc
        if loc[0] in ("tenants", "phases") and len(loc) > 3 and isinstance(loc[1], int):
            owner = (w.tenants if loc[0] == "tenants" else w.phases)[loc[1]].name
            head: tuple[str | int, ...] = (loc[0], owner)
            index, rest = loc[3], loc[4:]
        else:
            head, index, rest = ("slos",), loc[1], loc[2:]
        if isinstance(index, int):
            loc = (*head, index - own.get(head, 0), *rest)
        raise WorkloadError(path, [where(loc, str(exc))]) from None
    except ValueError as exc:
        raise WorkloadError(path, [where(("slos",), str(exc))]) from None
    return w
