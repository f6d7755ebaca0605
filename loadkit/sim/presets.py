"""Named simulator configurations: ``preset: NAME`` in a config mapping, or
``--preset NAME`` on the command line; other keys and flags override them.

- ``fast``: millisecond timings and no limits, for tests and quick demos.
- ``h100-llama3-8b``: Llama-3.1-8B-Instruct in BF16 on one H100 SXM 80GB
  under vLLM.  Each figure below says where it comes from and how sure it is.
"""

from __future__ import annotations

from typing import Any

# Sources used by the H100 preset:
# [H100] NVIDIA H100 Tensor Core GPU datasheet, SXM column: 80 GB HBM3 at
#        3.35 TB/s, 989 TFLOPS dense BF16, up to 700 W.
# [L31]  meta-llama/Llama-3.1-8B-Instruct config.json: 32 layers, 8 KV heads
#        of 128 dims; about 8.03e9 parameters, so 16.1 GB of BF16 weights and
#        2 (K, V) x 32 x 8 x 128 x 2 bytes = 128 KiB of KV-cache per token.
# [V06]  "vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction",
#        https://blog.vllm.ai/2024/09/05/perf-update.html: benchmarks exactly
#        this pairing (Llama 3 8B on 1xH100, ShareGPT), but its TPOT figures
#        are in charts whose values we could not read, so no number here is
#        taken from it.
# [PR]   vllm-project/vllm pull request #18566 (2025-05-22) posts a
#        `vllm bench serve` run of Llama-3.1-8B-Instruct on ShareGPT, 1000
#        requests at once: 6,583 output tokens/s, median ITL 25.44 ms,
#        median TTFT 9.46 s.  The GPU is not named in that output.
H100_LLAMA3_8B: dict[str, Any] = {
    "model": "meta-llama/Llama-3.1-8B-Instruct",
    # Decode is bound by reading the weights once per step: 16.1 GB / 3.35
    # TB/s = 4.8 ms [H100][L31].  6.0 ms assumes ~80% of peak bandwidth:
    # an estimate, not a published measurement.
    "itl_ms": 6.0,
    # Fitted so that a full batch of 256 gives ~25 ms per step, the median ITL
    # of the saturated run in [PR] (6.0 + 0.075 x 256 = 25.2 ms).  Its GPU is
    # not stated, so this is a plausibility fit, not a calibration.
    "itl_ms_per_seq": 0.075,
    # Prefill is compute bound: 2 x 8.03e9 FLOP per token at ~50% of 989
    # TFLOPS = 0.032 ms per token [H100][L31]; the 15 ms fixed part (one
    # scheduler step plus HTTP and tokenisation) is an estimate.
    "ttft_ms": 15.0,
    "prefill_ms_per_token": 0.03,
    # vLLM's long-standing default (V0 engine); newer releases may pick a
    # different default per GPU: not verified.
    "max_num_seqs": 256,
    # 0.9 x 80 GB (vLLM's default gpu_memory_utilization) - 16.1 GB weights -
    # ~4 GB activations and CUDA graphs (estimate) = ~52 GB / 128 KiB per
    # token [L31]: ~400k tokens.  Derived, not read off a vLLM start-up log.
    "kv_cache_tokens": 400_000,
    # A real cold start (weights from local NVMe, then CUDA-graph capture)
    # takes tens of seconds; it is left at 0 so the preset can be the embedded
    # target of short runs.  Add e.g. load_ms: 30000 to see it (an estimate).
    "load_ms": 0.0,
}

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"ttft_ms": 2.0, "itl_ms": 1.0, "output_tokens": 8,
             "embedding_ms": 1.0, "embedding_ms_per_token": 0.0},
    "h100-llama3-8b": H100_LLAMA3_8B,
}
