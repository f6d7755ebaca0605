"""Shorten or stretch a validated workload in time (`--duration`, `--time-scale`).

`--duration D` rescales the phases so the measured part lasts D (arrival
shapes keep their own periods); `--time-scale F` multiplies every time in the
file by F, shapes and sessions' think times included, so a 24-hour diurnal
curve can run in minutes with the same shape. Rates are untouched: request counts scale with time.
The simulator's own timings (cold start, idle unload, fault schedule) are the
server's behaviour under test and are not scaled, nor are the client's times
that race the server's latency (abandon patience, a retry's delay, tool
latency): scaled, a 1.5-s patience would give up on every answer.
"""

from __future__ import annotations

from typing import Any

from loadkit.workload.models import Phase, Tenant, Workload


def with_measured_duration(w: Workload, seconds: float) -> Workload:
    return _scale(w, seconds / w.measured_s, shapes=False)


def time_scaled(w: Workload, factor: float) -> Workload:
    return _scale(w, factor, shapes=True)


def _scale(w: Workload, f: float, shapes: bool) -> Workload:
    def arrival(spec: Any) -> Any:
        return spec.scaled_time(f) if shapes and spec is not None else spec

    def phase(p: Phase) -> Phase:
        return p.model_copy(update={"duration": p.duration * f, "arrival": arrival(p.arrival)})

    def tenant(t: Tenant) -> Tenant:
        return t.model_copy(update={"arrival": arrival(t.arrival),
                                    "phases": {k: arrival(v) for k, v in t.phases.items()}})

    def scenario(s: Any) -> Any:  # a session's think time is a user's time: it scales with the shapes
        session = getattr(s, "session", None)
        if not shapes or session is None:
            return s
        think = session.think_time
        think = think * f if isinstance(think, float) else think.model_copy(
            update={"min": think.min * f, "max": think.max * f})
        return s.model_copy(update={"session": session.model_copy(update={"think_time": think})})

    update = {"phases": [phase(p) for p in w.phases], "tenants": [tenant(t) for t in w.tenants],
              "arrival": arrival(w.arrival), "scenarios": [scenario(s) for s in w.scenarios]}
    if w.duration is not None:
        update |= {"duration": w.duration * f, "warmup": w.warmup * f}
    return w.model_copy(update=update)
