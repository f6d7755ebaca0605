"""The ramp (`loadkit capacity --ramp STEP`): one continuous run that raises
the load in steps, for a quick first answer before the probes.

Each step lasts STEP, at RAMP_GROWTH times the load of the step before,
from the search's first load up to --max (else FLOOR_FACTOR times the first
load). Every top-level SLO decided by counts is judged on each step's own
requests (a copy scoped to the step's phase), and the run ends as soon as
one step's SLO is decided failing (stop_when_decided, the always-valid
test): a clear knee takes a few steps, not the ramp's length.

What a step says is one-sided. A step that fails while the load rises
says the server cannot carry that load: a steady probe would only have
built a longer queue. A step that passes says less: the queue had a step's
time to grow, not a probe's. So the ramp's failing step becomes the
search's upper bound, and its first probe confirms the highest step below
it; the bisection goes on from there with its usual interval semantics.
A ramp that could not be trusted (the generator was the limit) is
reported and ignored: the search runs as without it.
"""

from __future__ import annotations

import dataclasses
import math
import time

from loadkit.capacity.model import Ramp, RampStep
from loadkit.capacity.probe import ProbeSetup, classify, slo_points
from loadkit.capacity.scale import load_of, with_warmup
from loadkit.capacity.search import Status
from loadkit.errors import InputError, RunError
from loadkit.outputs import REPORTS
from loadkit.result.model import RunResult, Scope, Verdict
from loadkit.run.execute import RunOptions, execute
from loadkit.workload.arrival_specs import Closed
from loadkit.workload.loader import LoadedWorkload, load_workload
from loadkit.workload.models import Phase, Workload, objective_of

RAMP_GROWTH = 1.25  # load of a step over the step before
MAX_STEPS = 40  # 1.25^40 is 7,500x: --max or the floor bounds a ramp well before
FOLDER = "ramp"
_TRUSTED = (Status.PASS, Status.FAIL, Status.INCONCLUSIVE)


def ramp_loads(start: float, high: float, growth: float = RAMP_GROWTH) -> list[float]:
    """start, start·growth, ... up to high, with high itself as the last step."""
    n = min(MAX_STEPS, max(1, math.ceil(math.log(high / start) / math.log(growth) - 1e-9) + 1))
    return [min(start * growth ** i, high) for i in range(n)]


def step_name(index: int) -> str:
    return f"ramp-{index + 1:02d}"


def ramp_workload(loaded: LoadedWorkload, loads: list[float], step_s: float) -> LoadedWorkload:
    """The workload as a ramp: one phase per step at that load (each tenant's
    arrival of the first measured phase, scaled), a warm-up at the first
    step's load, and each counted top-level SLO judged in every step."""
    w = loaded.workload
    slos = [o.text for item in w.slos
            if (o := objective_of(item, "all")).scope == "all" and o.counted]
    if not slos:
        raise InputError("--ramp judges each step by the workload's SLOs over all its "
                         "requests that are decided by counts (percentiles, error_rate, "
                         "goodput in %); this workload has none")
    first = next(p for p in w.phase_list if not p.warmup)
    if any(isinstance(w.arrival_for(t, first), Closed) for t in w.all_tenants):
        raise InputError("--ramp raises a rate: this workload's arrivals are closed loops "
                         "(users); search without --ramp")
    base = load_of(loaded)
    names = [step_name(i) for i in range(len(loads))]
    tenants = []
    for t in w.all_tenants:
        spec = w.arrival_for(t, first)
        tenants.append(t.model_copy(update={"arrival": None, "slos": [], "phases": {
            name: None if spec is None else spec.scaled_rate(v / base)
            for name, v in zip(names, loads, strict=True)}}))
    ramp = w.model_copy(update={
        "duration": None, "warmup": 0.0, "arrival": None, "tenants": tenants, "slos": [],
        "phases": [Phase(name=n, duration=step_s, slos=list(slos)) for n in names],
        "stop_when_decided": True})
    try:
        ramp = Workload.model_validate(ramp.model_dump(by_alias=True))
    except ValueError as exc:
        raise InputError(f"--ramp: the workload as a ramp is not valid: {exc}") from None
    ramped, _ = with_warmup(dataclasses.replace(loaded, workload=ramp), step_s)
    return ramped


def run_ramp(setup: ProbeSetup, loads: list[float], step_s: float) -> Ramp:
    """The ramp, run in its own folder (`ramp/`, a whole run like a probe's)."""
    t0 = time.monotonic()
    loaded = load_workload(setup.path, dataclasses.replace(setup.overrides, duration=step_s))
    ramped = ramp_workload(loaded, loads, step_s)
    base = {"step_s": step_s, "loads": loads, "folder": FOLDER}

    def untrusted(reason: str) -> Ramp:
        return Ramp(**base, trusted=False, reasons=[reason],
                    elapsed_s=round(time.monotonic() - t0, 3))
    try:
        result, _ = execute(ramped, RunOptions(out_dir=setup.out_dir / FOLDER,
                                               strict=setup.strict, reports=REPORTS - {"html"},
                                               handle_signals=setup.cli, quiet_gc=setup.cli,
                                               fleet=setup.fleet, live_view=setup.live_view))
    except RunError as exc:  # unreachable, refused: nothing measured
        return untrusted(str(exc))
    except KeyboardInterrupt:
        return untrusted("interrupted")
    status, reasons = classify(result)
    steps = steps_of(result, loads)
    trusted = status in _TRUSTED
    confirm, failed = answer(steps) if trusted else (None, None)
    return Ramp(**base, run_id=result.run_id, trusted=trusted,
                reasons=[] if trusted else reasons, steps=steps, confirm=confirm,
                failed=failed, elapsed_s=round(time.monotonic() - t0, 3))


def steps_of(result: RunResult, loads: list[float]) -> list[RampStep]:
    """The steps the run reached, each judged by its own SLOs (named as the
    top-level SLO they copy, as the probes name it)."""
    start = {p.name: p.start_s for p in result.phases}
    out = []
    for i, value in enumerate(loads):
        name = step_name(i)
        mine = [s for s in result.slos if s.scope == Scope.of("phase", name)]
        if not any(s.samples for s in mine):
            break  # the run ended before this step
        verdicts = {s.verdict for s in mine}
        status = Status.FAIL if Verdict.FAIL in verdicts else \
            Status.PASS if verdicts == {Verdict.PASS} else Status.INCONCLUSIVE
        out.append(RampStep(value=value, phase=name, start_s=start.get(name, 0.0),
                            status=status, samples=max(s.samples for s in mine),
                            slos=[x.model_copy(update={"name": f"{x.text} [all]"})
                                  for x in slo_points(mine)]))
    return out


def answer(steps: list[RampStep]) -> tuple[float | None, float | None]:
    """(the load to confirm first, the lowest failing step's load): the step
    below the first failing one, else the highest step reached."""
    for i, step in enumerate(steps):
        if step.status == Status.FAIL:
            return (steps[i - 1].value if i else None), step.value
    return (steps[-1].value if steps else None), None
