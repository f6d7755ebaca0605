"""Embedded OpenAI-compatible inference-server simulator.

A deterministic stand-in for an LLM endpoint (vLLM, TGI, OpenAI) with a
configurable time-to-first-token and inter-token latency, so loadkit can be
tested, demonstrated and calibrated without a GPU.  Self-contained on
purpose: it imports nothing else from loadkit (only the stdlib, aiohttp and,
optionally, uvloop/PyYAML).

    from loadkit.sim import SimConfig, serve
    runner, port = await serve(SimConfig(ttft_ms=50, itl_ms=8))
    ...
    await runner.cleanup()

Or from a shell: ``python -m loadkit.sim --port 8000 --itl-ms 8``.
"""

from .config import SimConfig
from .server import build_app, serve

__all__ = ["SimConfig", "build_app", "serve"]
