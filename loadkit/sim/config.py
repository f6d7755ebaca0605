"""Simulator configuration.

Every knob is a field of the frozen :class:`SimConfig` dataclass, and every
field carries its kind, bounds and help text in ``metadata``.  That keeps the
class easy to grow: a new field automatically gets validation in
``from_mapping``/``__post_init__`` and a ``--kebab-case`` flag in
``python -m loadkit.sim``, with no other code to touch.

The defaults reproduce the original fixed-latency simulator: no batch or
KV-cache limit, no per-sequence cost, no cold start, no faults, so TTFT is
``ttft_ms`` and every inter-token gap ``itl_ms`` at any load.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .faults import Fault, parse_faults


def _knob(default: Any, help: str, minimum: float | None = None, kind: str | None = None,
          choices: tuple[str, ...] | None = None, maximum: float | None = None,
          empty: bool = False) -> Any:
    """A dataclass field with its kind, bounds and help text attached
    (``empty``: a string knob that may be empty)."""
    kind = kind or type(default).__name__
    return field(default=default, metadata={"help": help, "min": minimum, "kind": kind,
                                            "choices": choices, "max": maximum,
                                            "empty": empty})


@dataclass(frozen=True)
class SimConfig:
    """How the simulated inference server behaves.

    Instances are immutable so one config can be shared by every request
    handler without copying; use ``dataclasses.replace`` to derive variants.
    Invalid values raise ``ValueError`` naming the offending field, whether
    the instance is built directly or through :meth:`from_mapping`.
    """

    # Timing of one request at an idle server: TTFT = ttft_ms +
    # prefill_ms_per_token * prompt tokens; then one token per decode step.
    ttft_ms: float = _knob(20.0, "prefill time of any request, before the per-token "
                           "part (ms)", 0.0)
    prefill_ms_per_token: float = _knob(0.0, "prefill time per prompt token (ms)", 0.0)
    itl_ms: float = _knob(10.0, "decode step time at batch size 0: the base gap "
                          "between tokens (ms)", 0.0)
    itl_ms_per_seq: float = _knob(0.0, "decode step time added per sequence running on "
                                  "the replica (ms); per-request speed falls as the "
                                  "batch grows", 0.0)
    output_tokens: int = _knob(16, "output length when a request gives no max_tokens", 1)
    reasoning_tokens: int = _knob(0, "a reasoning model: of an answer's max tokens, this "
                                  "many come first as reasoning (at the decode pace), then "
                                  "the answer: chat `reasoning_content`, Responses "
                                  "reasoning_text, Anthropic thinking (whatever the "
                                  "request's `thinking` says); usage counts them (chat: "
                                  "completion_tokens_details.reasoning_tokens); text "
                                  "completions never reason", 0)
    reasoning_sigma: float = _knob(0.0, "spread of reasoning lengths: when > 0, each "
                                   "request's reasoning tokens are lognormal with median "
                                   "reasoning_tokens and this sigma (seeded), still bounded "
                                   "by its max tokens", 0.0)
    prefix_cache_blocks: int = _knob(0, "automatic prefix caching: KV blocks one replica "
                                     "keeps for reuse by prompts with the same prefix "
                                     "(LRU); a hit skips that block's prefill; 0 = off", 0)
    block_tokens: int = _knob(16, "tokens per KV block of the prefix cache (vLLM: 16)", 1)
    stream_interval: int = _knob(1, "tokens per streamed event after the first, as vLLM's "
                                 "--stream-interval: each event carries the tokens decoded "
                                 "since the last one", 1)
    # Tool calls and structured output (chat, Responses, Anthropic Messages).
    tool_call_share: float = _knob(1.0, "of the requests that offer tools, with tool_choice "
                                   "auto (not none) and whose last input is not a tool "
                                   "result, this share answers with one tool call instead "
                                   "of text (required, any or a named tool always call; a "
                                   "tool result last always gets text)", 0.0, maximum=1.0)
    malformed_tool_share: float = _knob(0.0, "of the tool calls, this share has arguments "
                                        "that are not valid JSON (cut before the closing "
                                        "brace)", 0.0, maximum=1.0)
    invalid_json_share: float = _knob(0.0, "of the structured-output answers (json_schema, "
                                      "json_object), this share is not valid against the "
                                      "schema: alternately cut before its last brace and "
                                      "missing a required property", 0.0, maximum=1.0)
    api_key: str = _knob("", "when set, the /v1 endpoints want `Authorization: Bearer KEY` "
                         "(/v1/messages: `x-api-key: KEY`, or the Bearer) and answer 401 "
                         "otherwise; empty: no auth", empty=True)
    # Capacity: where queueing comes from.
    replicas: int = _knob(1, "number of replicas behind the endpoint", 1)
    max_num_seqs: int = _knob(0, "sequences one replica runs at once; 0 = no limit", 0)
    kv_cache_tokens: int = _knob(0, "KV-cache of one replica in tokens; each request "
                                 "reserves prompt + max output tokens; 0 = no limit", 0)
    queue_policy: str = _knob("fcfs", "order of the waiting queue: fcfs, or priority "
                              "(lowest priority header value first)",
                              choices=("fcfs", "priority"))
    priority_header: str = _knob("x-priority", "request header with an integer priority")
    tenant_header: str = _knob("x-tenant", "request header naming the tenant (rate limits)")
    # Cold starts.
    load_ms: float = _knob(0.0, "model-load delay at start-up and after scaling to "
                           "zero (ms)", 0.0)
    scale_to_zero_s: float = _knob(0.0, "idle seconds after which the replicas unload; "
                                   "0 = never", 0.0)
    # /v1/embeddings.
    embedding_ms: float = _knob(5.0, "time of an embeddings request, base part (ms)", 0.0)
    embedding_ms_per_token: float = _knob(0.01, "embeddings time per input token (ms)", 0.0)
    embedding_dim: int = _knob(384, "length of the embedding vectors", 1)
    # KServe v2 (kserve_models.py): the tensor model and its cost.
    kserve_tensor_model: str = _knob("loadkit-tensor", "name of the KServe v2 tensor model "
                                     "(INPUT0 FP32 [-1, -1] -> OUTPUT0)")
    kserve_infer_ms: float = _knob(2.0, "time of a tensor model request, base part (ms)", 0.0)
    kserve_infer_ms_per_mb: float = _knob(1.0, "tensor model time per MB (10^6 bytes) of "
                                          "input tensors (ms)", 0.0)
    # Images and audio in prompts (media.py): their tokens are prompt tokens.
    image_patch_px: int = _knob(28, "an image costs one prompt token per square of this "
                                "many pixels: ceil(w/p) x ceil(h/p) tokens (Qwen2-VL: 28)", 1)
    max_image_tokens: int = _knob(16384, "most prompt tokens one image costs (a larger "
                                  "image is taken as resized down); 0 = no cap", 0)
    url_image_px: int = _knob(512, "an http(s) image URL is never fetched: it counts as "
                              "a square image this many pixels a side; 0 = refuse image "
                              "URLs (400)", 0)
    audio_tokens_per_s: float = _knob(25.0, "prompt tokens per second of audio: "
                                      "ceil(seconds x this) (Qwen2-Audio: 25)", 0.0)
    mp3_kbps: float = _knob(128.0, "an MP3's duration is estimated from its size at this "
                            "bitrate (kbit/s); 0 = refuse MP3 (400)", 0.0)
    # Rerank and score (rerank.py): one batch seat per request.
    rerank_ms: float = _knob(5.0, "time of a rerank or score request, base part (ms)", 0.0)
    rerank_ms_per_doc: float = _knob(0.2, "rerank or score time per document (query and "
                                     "document pair) (ms)", 0.0)
    rerank_ms_per_token: float = _knob(0.01, "rerank or score time per token of every "
                                       "pair: query + document, a word a token (ms)", 0.0)
    # Identity and determinism.
    seed: int = _knob(0, "seed for generated text, ids, vectors and fault draws", 0)
    model: str = _knob("loadkit-sim", "model name reported by the server")
    faults: tuple[Fault, ...] = _knob((), "fault schedule: a JSON list of "
                                      "{kind, start, end, ...} (see loadkit/sim/faults.py)",
                                      kind="faults")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))
        for i, fault in enumerate(self.faults):
            if fault.replica is not None and fault.replica >= self.replicas:
                raise ValueError(f"faults[{i}].replica must be < replicas "
                                 f"({self.replicas}), got {fault.replica}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build a config from a plain mapping (e.g. parsed YAML or JSON).

        ``preset: NAME`` starts from a named preset (see ``presets.py``); the
        other keys override it.  Unknown keys are rejected rather than
        ignored, so a typo such as ``itl: 5`` fails loudly instead of
        silently running with defaults.
        """
        from .presets import PRESETS  # presets are SimConfig mappings themselves

        if not isinstance(data, Mapping):
            raise ValueError(
                f"sim config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known and k != "preset")
        if unknown:
            raise ValueError(
                f"unknown sim config key(s): {', '.join(unknown)} "
                f"(known: preset, {', '.join(sorted(known))})"
            )
        values = dict(data)
        name = values.pop("preset", None)
        if name is not None:
            if name not in PRESETS:
                raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
            values = {**PRESETS[name], **values}
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The fields that differ from the defaults, as from_mapping takes them."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[f.name] = [x.as_dict() for x in value] if f.name == "faults" else value
        return out


def _check(f: dataclasses.Field, value: Any) -> Any:
    """Validate (and lightly coerce) one field value; raise naming the field."""
    name, kind = f.name, f.metadata["kind"]
    if kind == "faults":
        return parse_faults(value)
    # bool is an int subclass; `output_tokens: true` is a mistake, not 1.
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a {kind}, got a bool")
    if kind == "float":
        if not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    elif kind == "int":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str) or not (value or f.metadata["empty"]):
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        choices = f.metadata["choices"]
        if choices and value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    minimum = f.metadata["min"]
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    maximum = f.metadata["max"]
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum:g}, got {value!r}")
    return value
