"""A loaded workload made ready for the engine: one prepared request per
(tenant, scenario), the closed loops, the sessions, the secrets to mask."""

from __future__ import annotations

import os

from loadkit.arrivals import Mix, closed_loops
from loadkit.engine import Plan
from loadkit.protocols.registry import prepare
from loadkit.workload.loader import LoadedWorkload
from loadkit.workload.scenarios import GenerationScenario
from loadkit.workload.tokenizer import Counter as TokenCounter
from loadkit.workload.tokenizer import load as load_tokenizer


def plan_for(loaded: LoadedWorkload, base_url: str) -> Plan:
    w = loaded.workload
    tenants, phases = w.all_tenants, w.phase_list
    # Each tenant has its own identity headers: one prepared request per pair.
    counter = TokenCounter(load_tokenizer(loaded.tokenizer)) if loaded.tokenizer else None
    if counter and any(r.blocks for rows in loaded.traces.values() for r in rows):
        counter.single_token_word(0)  # a vocabulary scan: now, not on the first request
    requests = [[prepare(s, t, w.seed, os.environ, loaded.prompt_sets, counter)
                 for s in w.scenarios] for t in tenants]
    closed = closed_loops(w)
    mixes = {(c.tenant, c.phase): Mix.of(w, tenants[c.tenant], phases[c.phase]) for c in closed}
    return Plan(base_url=base_url, requests=requests,
                scenario_names=[s.name for s in w.scenarios],
                tenant_names=[t.name for t in tenants], phase_names=[p.name for p in phases],
                client=w.client, total_s=sum(p.duration for p in phases),
                interval_s=w.interval, closed=closed, mixes=mixes,
                sessions={i: s for i, s in enumerate(w.scenarios)
                          if isinstance(s, GenerationScenario) and s.session is not None},
                secrets=[os.environ[v] for v in w.env_refs() if os.environ.get(v)])
