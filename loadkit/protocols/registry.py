"""Pick the adapter for a scenario and resolve its `${ENV_VAR}` headers."""

from __future__ import annotations

from collections.abc import Mapping

from loadkit import __version__
from loadkit.protocols import http, openai
from loadkit.engine.adapter import PreparedRequest
from loadkit.workload.models import ENV_REF, HttpScenario, OpenAIScenario, Tenant


def resolve(value: str, env: Mapping[str, str]) -> str:
    """Substitute `${NAME}`; the result lives only in memory, never in outputs."""
    return ENV_REF.sub(lambda m: env[m.group(1)], value)


def prepare(scenario: OpenAIScenario | HttpScenario, tenant: Tenant, seed: int,
            env: Mapping[str, str]) -> PreparedRequest:
    declared = {**scenario.headers, **tenant.headers}
    headers = {"User-Agent": f"loadkit/{__version__}",
               **{k: resolve(v, env) for k, v in declared.items()}}
    if isinstance(scenario, OpenAIScenario):
        return openai.prepare(scenario, headers, seed)
    return http.prepare(scenario, headers, seed)
