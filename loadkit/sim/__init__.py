"""Embedded OpenAI-compatible inference-server simulator.

A deterministic stand-in for an LLM endpoint (vLLM, TGI, OpenAI, Anthropic)
that speaks chat and text completions, the OpenAI Responses API and the
Anthropic Messages API (reasoning, tool calls and structured output in all
three chat-like ones), and behaves like a GPU server: replicas with continuous batching, prefill and
decode costs, a KV-cache, a waiting queue, cold starts, scheduled faults
(a gateway's overhead in front of it among them, and a server that keeps
generating for clients that left), images and audio in prompts at a
declared token cost, embeddings, rerank and score, vLLM's and
SGLang's prefix cache resets and vLLM-style ``/metrics`` (each request's
queue, prefill and decode times among them, adding up to its end-to-end).  Its defaults are a fixed
time-to-first-token and inter-token latency at any load.  Self-contained on
purpose: the server imports nothing else from loadkit (only the stdlib,
aiohttp, Pillow for image sizes and, optionally, uvloop/PyYAML); ``embedded`` is loadkit's side, the
launcher that runs it as a child process for a run without a target.

    from loadkit.sim import SimConfig, serve
    runner, port = await serve(SimConfig.from_mapping({"preset": "h100-llama3-8b"}))
    ...
    await runner.cleanup()

Or from a shell: ``python -m loadkit.sim --port 8000 --preset fast --itl-ms 8``.

Modules: ``config`` (SimConfig), ``presets``, ``faults`` (schedule format),
``serving`` (replicas, seats, queue, cold start), ``timeline`` and
``injector`` (faults in time and per request), ``context`` (what the
handlers get from the server), ``disconnects`` (clients that hang up: the
server's log and counters of them), ``admission`` (door, replica, counters),
``responses`` (errors, cuts), ``generate`` (the timing loop of every
dialect), ``dialect`` (what the dialects share: parsed request, answer, the
frames interface), ``openai_wire``, ``responses_wire``, ``anthropic_wire``
(the wire formats), ``vocab`` (words and token counts), ``answer`` (per
request: reasoning length, words, tool call or document), ``tools`` (JSON
documents from schemas), ``auth`` (the api_key), ``embeddings``,
``media`` (images and audio in prompts: their tokens and the server's log of
them), ``rerank`` (rerank and score in vLLM's, Cohere's and TEI's formats),
``metrics``, ``server`` (routes, lifecycle), ``embedded`` (child-process
launcher).
"""

from typing import Any

from .config import SimConfig
from .presets import PRESETS

__all__ = ["PRESETS", "SimConfig", "build_app", "serve"]


def __getattr__(name: str) -> Any:
    """The server (aiohttp and all it serves) loads on first use: a workload
    only validates its `simulator:` block (SimConfig), and every command of
    the CLI imports that."""
    if name in ("build_app", "serve"):
        from . import server
        return getattr(server, name)
    raise AttributeError(name)
