"""The probe: one request per (tenant, scenario) before the clock starts.

Not measured and not counted. It answers one question, cheaply: does the
target accept what this run will send? A rejection (an HTTP 4xx or 501/505, a
failed response check, an answer that breaks the protocol) stops the run
before it starts (exit 3) with the server's own words and what to check,
instead of an hour of `http_4xx`. Other failures (5xx, timeouts, resets: a
server still warming up) are only reported: the run is there to measure them.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from loadkit.arrivals.schedule import sample_tokens
from loadkit.engine.answer import STREAM_CUT
from loadkit.engine.exchange import exchange
from loadkit.engine.runner import Plan
from loadkit.engine.transports import open_transport
from loadkit.errors import ErrorKind
from loadkit.record.recorder import RequestRecord
from loadkit.urls import doubled_v1
from loadkit.workload.models import Workload
from loadkit.workload.scenarios import GenerationScenario

REJECTIONS = (ErrorKind.HTTP_4XX, ErrorKind.CHECK_FAILED, ErrorKind.PROTOCOL,
              ErrorKind.INCOMPLETE)
# 5xx that say the server does not do this request at all (a static file
# server answers a POST with 501), as lasting as a 4xx: never a warm-up.
NOT_SERVED = frozenset({501, 505})
PROBE_MAX_TOKENS = 16  # enough to show a stream works; cheap on any server
TRIES = 3  # a refusal must repeat: one bad answer in five is a server to measure
# A rate limit (429) may be a passing one: the next try waits this long, then
# twice as long, before the refusal is believed.
RATE_LIMITED_WAIT_S = 1.0


@dataclass(frozen=True)
class ProbeFailure:
    tenant: int
    scenario: int
    status: int
    kind: ErrorKind
    message: str

    @property
    def rejected(self) -> bool:
        return self.kind in REJECTIONS or self.status in NOT_SERVED


async def probe(plan: Plan, workload: Workload) -> list[ProbeFailure]:
    """Send every (tenant, scenario) pair the run will use once, concurrently."""
    rng = random.Random(f"{workload.seed}:probe")
    pairs = []
    names = [s.name for s in workload.scenarios]
    for ti, tenant in enumerate(workload.all_tenants):
        for si in [names.index(n) for n in tenant.scenarios or names]:
            s = workload.scenarios[si]
            tokens = getattr(s, "prompt_tokens", None)  # http and rerank draw none here
            prompt = sample_tokens(tokens, rng) if tokens is not None else None
            output = None
            if isinstance(s, GenerationScenario):
                # A check of the whole text (a pattern, a JSON Schema) needs the
                # whole answer: a reasoning model may spend 16 tokens thinking.
                whole = s.checks.regex is not None or s.response_format is not None
                floor = max(PROBE_MAX_TOKENS, s.checks.min_output_tokens or 0)
                output = sample_tokens(s.max_tokens, rng)
                output = output if whole else min(output, floor)
            pairs.append((ti, si, prompt, output))
    return [f for f in await asyncio.gather(*(_one(plan, *p) for p in pairs)) if f is not None]


async def _one(plan: Plan, tenant: int, scenario: int, prompt: int | None,
               output: int | None) -> ProbeFailure | None:
    failure = None
    for attempt in range(TRIES):
        if failure is not None and failure.status == 429:
            await asyncio.sleep(RATE_LIMITED_WAIT_S * 2 ** (attempt - 1))
        t = time.monotonic_ns()
        rec = RequestRecord(plan.tenant_names[tenant], plan.scenario_names[scenario], "probe",
                            t, t)
        # Each try on a connection of its own: a server (or proxy) may close the
        # connection after a refusal without saying so (no `Connection: close`),
        # and the next try would then fail as a `reset` on it, hiding the refusal.
        transport = open_transport(plan.base_url, plan.requests, plan.client)
        try:
            status = await exchange(plan, transport, tenant, scenario, prompt, output, 0, rec,
                                    may_leave=False)
        finally:
            await transport.close()
        if rec.error is None:
            return None
        failure = ProbeFailure(tenant, scenario, status, rec.error, rec.message)
        if not failure.rejected:
            break
    return failure


def credentials_source(workload: Workload, tenant: int, scenario: int) -> str:
    """Where the workload says a (tenant, scenario)'s credentials come from."""
    return (f"tenants[{tenant}].api_key or .headers" if workload.tenants
            else f"scenarios[{scenario}].headers (Authorization)")


def explain(f: ProbeFailure, workload: Workload) -> str:
    """The server's words, and where in the workload to look."""
    s = workload.scenarios[f.scenario]
    tenant = workload.all_tenants[f.tenant]
    who = f"scenario {s.name!r}" + (f", tenant {tenant.name!r}" if workload.tenants else "")
    where_id = credentials_source(workload, f.tenant, f.scenario)
    model = getattr(s, "model", None)
    if f.kind is ErrorKind.HTTP_4XX and f.status in (401, 403):
        hint = f"check the credentials: {where_id}, and that the ${{VAR}}s they name are set"
    elif f.kind is ErrorKind.HTTP_4XX and f.status == 429:
        hint = (f"the server rate-limits even one request at a time ({TRIES} tries over "
                f"{RATE_LIMITED_WAIT_S * (2 ** (TRIES - 1) - 1):g} s): the run would measure "
                f"its limit; raise the limit of {where_id}, or --no-probe to measure it")
    elif f.kind is ErrorKind.HTTP_4XX and f.status == 404:
        hint = (doubled_v1(workload.target or "") if s.request_path.startswith("/v1/") else "")
        hint += (f"check the path (scenarios[{f.scenario}]: {s.request_path})"
                + (f" and the model ({model!r}; --model NAME)" if model else ""))
    elif f.kind is ErrorKind.HTTP_4XX:
        hint = f"the server refused the request: check scenarios[{f.scenario}]" + (
            f" (model {model!r}, max_tokens, prompt)" if model else "")
    elif f.status in NOT_SERVED:
        hint = (f"the server does not serve this request at all: is the target an inference "
                f"endpoint, and {s.request_path} its path?")
    elif f.kind is ErrorKind.CHECK_FAILED:
        hint = f"the answer failed scenarios[{f.scenario}].checks"
    elif f.kind is ErrorKind.PROTOCOL and f.message.startswith(STREAM_CUT):
        hint = "the server streams on past max_tokens: does it honour max_tokens?"
    elif f.kind is ErrorKind.INCOMPLETE:
        hint = ("the server answered 200 but not a whole answer (three tries): an empty "
                "answer is a failure, whatever the status")
    elif f.kind is ErrorKind.PROTOCOL:
        hint = (f"the answer is not what a {s.kind} endpoint sends: is "
                f"{s.request_path} the right path"
                + ("; does the server stream (else stream: false)?"
                   if getattr(s, "stream", False) else "?"))
    else:
        hint = "not a rejection: the run goes on and measures it"
    return f"{who}: {f.message} -> {hint}"
