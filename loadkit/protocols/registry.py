"""Pick the adapter for a scenario and resolve its `${ENV_VAR}` headers."""

from __future__ import annotations

from collections.abc import Mapping

from loadkit import __version__, envrefs
from loadkit.engine.adapter import PreparedRequest
from loadkit.protocols import embeddings, generation, http, kserve, rerank
from loadkit.workload.kserve_spec import KServeScenario
from loadkit.workload.models import Tenant
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.rerank_spec import RerankScenario
from loadkit.workload.scenarios import EmbeddingsScenario, GenerationScenario, HttpScenario
from loadkit.workload.tokenizer import Counter as TokenCounter

STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"  # Anthropic's output_format


AnyScenario = (GenerationScenario | EmbeddingsScenario | HttpScenario | KServeScenario
               | RerankScenario)


def identity(scenario: AnyScenario, tenant: Tenant,
             env: Mapping[str, str]) -> dict[str, str]:
    """The headers one (scenario, tenant) sends, `${VAR}`s resolved (in memory
    only, never in outputs); InputError when a variable is not set."""
    declared = {**scenario.headers, **tenant.headers}
    if isinstance(scenario, GenerationScenario) and scenario.kind == "anthropic-messages":
        # Anthropic's API asks for its version, and takes the key in x-api-key.
        declared = {"anthropic-version": scenario.anthropic_version, **declared}
        if scenario.response_format is not None:  # structured outputs are in beta there
            declared = {"anthropic-beta": STRUCTURED_OUTPUTS_BETA, **declared}
        if tenant.api_key:
            declared["x-api-key"] = tenant.api_key
    elif tenant.api_key:
        declared["Authorization"] = f"Bearer {tenant.api_key}"
    return {"User-Agent": f"loadkit/{__version__}",
            **{k: envrefs.resolve(v, env, f"headers.{k}") for k, v in declared.items()}}


def prepare(scenario: AnyScenario, tenant: Tenant,
            seed: int, env: Mapping[str, str],
            prompt_sets: Mapping[str, list[Prompt]] | None = None,
            counter: TokenCounter | None = None) -> PreparedRequest:
    """`counter`: the workload's tokenizer, when it has one."""
    headers = identity(scenario, tenant, env)
    key = f"{seed}:{tenant.name}"  # tenants draw different prompts from a prompt set
    if tenant.abandon is not None and isinstance(scenario, GenerationScenario | KServeScenario):
        # The tenant's clients leave by its own rule (checked at load: generation only).
        scenario = scenario.model_copy(update={"abandon": tenant.abandon})
    if isinstance(scenario, GenerationScenario):
        prompts = (prompt_sets or {}).get(scenario.prompts) if scenario.prompts else None
        return generation.prepare(scenario, headers, key, prompts, counter)
    if isinstance(scenario, EmbeddingsScenario):
        return embeddings.prepare(scenario, headers, key)
    if isinstance(scenario, KServeScenario):
        return kserve.prepare(scenario, headers, key)
    if isinstance(scenario, RerankScenario):
        return rerank.prepare(scenario, headers, key)
    return http.prepare(scenario, headers)
