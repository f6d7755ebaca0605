"""Embedded OpenAI-compatible inference-server simulator.

A deterministic stand-in for an LLM endpoint (vLLM, TGI, OpenAI) that
behaves like a GPU server: replicas with continuous batching, prefill and
decode costs, a KV-cache, a waiting queue, cold starts, scheduled faults,
embeddings and vLLM-style ``/metrics``.  Its defaults are a fixed
time-to-first-token and inter-token latency at any load.  Self-contained on
purpose: the server imports nothing else from loadkit (only the stdlib,
aiohttp and, optionally, uvloop/PyYAML); ``embedded`` is loadkit's side, the
launcher that runs it as a child process for a run without a target.

    from loadkit.sim import SimConfig, serve
    runner, port = await serve(SimConfig.from_mapping({"preset": "h100-llama3-8b"}))
    ...
    await runner.cleanup()

Or from a shell: ``python -m loadkit.sim --port 8000 --preset fast --itl-ms 8``.

Modules: ``config`` (SimConfig), ``presets``, ``faults`` (schedule format),
``serving`` (replicas, seats, queue, cold start), ``timeline`` and
``injector`` (faults in time and per request), ``context`` (what the
handlers get from the server), ``admission`` (door, replica, counters),
``responses`` (errors, cuts), ``generate`` (completions through the model),
``embeddings``, ``metrics``, ``openai_wire``, ``server`` (routes, lifecycle),
``embedded`` (child-process launcher).
"""

from .config import SimConfig
from .presets import PRESETS
from .server import build_app, serve

__all__ = ["PRESETS", "SimConfig", "build_app", "serve"]
