"""The two models the simulator serves over KServe v2 (HTTP and gRPC), and
what both fronts share: their metadata, readiness and the tensor model's cost.

- the LLM, named ``model`` (as on ``/v1``): inputs ``text_input`` (BYTES),
  ``max_tokens`` (INT32), ``stream`` (BOOL), output ``text_output``, as
  Triton's vLLM and TensorRT-LLM models declare them; decoupled: it streams
  through the same serving model as every other dialect (admission, batch
  seats, prefill, one decode step per token), so TTFT and ITL truth is the
  simulator's;
- a plain tensor model, named ``kserve_tensor_model``: input ``INPUT0``
  (FP32, two dimensions, any size), output ``OUTPUT0`` (FP32 [1]: the input's
  byte count); it takes ``kserve_infer_ms + kserve_infer_ms_per_mb x input MB``
  of its replica's time, without a batch seat (as an embeddings request), so
  its latency truth is known for any tensor size.

A model is ready when a replica can serve it (ready, or scaled to zero: the
next request loads it); loading or dead is not ready.
"""

from __future__ import annotations

from typing import Any

from .admission import Admission, fixed_work
from .context import SimContext
from .serving import COLD, READY

LLM_INPUTS = (("text_input", "BYTES", [1]), ("max_tokens", "INT32", [1]),
              ("stream", "BOOL", [1]))
LLM_OUTPUTS = (("text_output", "BYTES", [-1]),)
TENSOR_INPUTS = (("INPUT0", "FP32", [-1, -1]),)
TENSOR_OUTPUTS = (("OUTPUT0", "FP32", [1]),)
SIZES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2,
         "UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8}
MB = 1e6


class KServeError(Exception):
    """A refusal: HTTP ``status`` with ``{"error": message}``, or the gRPC
    status ``code`` (a grpc.StatusCode name)."""

    def __init__(self, message: str, status: int = 400, code: str = "INVALID_ARGUMENT"):
        super().__init__(message)
        self.status, self.code = status, code


def models(ctx: SimContext) -> dict[str, str]:
    """name -> kind (llm | tensor)."""
    return {ctx.config.model: "llm", ctx.config.kserve_tensor_model: "tensor"}


def kind_of(ctx: SimContext, name: str, version: str = "") -> str:
    kind = models(ctx).get(name)
    if kind is None or version not in ("", "1"):
        what = f"{name!r} version {version!r}" if version else repr(name)
        raise KServeError(f"Request for unknown model: {what} is not found", 404, "NOT_FOUND")
    return kind


def ready(ctx: SimContext) -> bool:
    states = ctx.deployment.states(ctx.loop.time())
    return any(s in (READY, COLD) for s in states)


def metadata(ctx: SimContext, name: str) -> dict[str, Any]:
    kind = kind_of(ctx, name)
    ins, outs = (LLM_INPUTS, LLM_OUTPUTS) if kind == "llm" else (TENSOR_INPUTS, TENSOR_OUTPUTS)
    return {"name": name, "versions": ["1"],
            "platform": "vllm" if kind == "llm" else "loadkit_sim",
            "inputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in ins],
            "outputs": [{"name": n, "datatype": d, "shape": s} for n, d, s in outs]}


def index(ctx: SimContext) -> list[dict[str, str]]:
    """Triton's repository index: every model, with its state."""
    state = "READY" if ready(ctx) else "UNAVAILABLE"
    return [{"name": n, "version": "1", "state": state} for n in models(ctx)]


def check_tensor_inputs(inputs: list[tuple[str, str, list[int]]]) -> None:
    """The tensor model takes exactly INPUT0, FP32, two dimensions."""
    if [(n, d, len(s)) for n, d, s in inputs] != [("INPUT0", "FP32", 2)]:
        got = ", ".join(f"{n} {d} {s}" for n, d, s in inputs) or "none"
        raise KServeError(f"expected one input INPUT0 FP32 of two dimensions, got {got}")


async def tensor_work(ctx: SimContext, admitted: Admission, nbytes: int,
                      t0: float) -> float | None:
    """The tensor model's work for an admitted request: `kserve_infer_ms` and
    `kserve_infer_ms_per_mb` of input; the loop time it was done, or None when
    its replica died or a fault cut it."""
    cfg = ctx.config
    done = await fixed_work(
        ctx, admitted, (cfg.kserve_infer_ms + cfg.kserve_infer_ms_per_mb * nbytes / MB) / 1000.0,
        t0)
    if done is not None:
        admitted.answered(done)
    return done
