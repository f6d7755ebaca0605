"""Fault schedule: what can go wrong in the simulator, and when.

A schedule is a list of mappings, each one fault switched on from ``start``
to ``end`` (seconds since the simulator started serving; ``end`` omitted =
until it stops).  Times are numbers of seconds or strings such as ``250ms``,
``30s``, ``2m``.  Every kind takes ``kind``, ``start`` and ``end``; the rest::

    kind           keys (required*)                    effect while active
    error          rate*, status=500                   that fraction of requests answered 5xx
    rate_limit     per_second*, burst, tenant          token bucket per tenant; over it: 429 + Retry-After
    reset          rate*, after_tokens                 that fraction of connections cut mid-answer
    stall          duration*, every*, replica          no token produced for `duration` every `every`
    malformed      rate*                               that fraction of answers carry one broken JSON chunk
    degrade        percent_per_minute*, replica        step times grow by p% per minute (compounding)
    ramp           ms_per_s*, replica                  time to first token grows linearly: a request
                                                       arriving t s after `start` waits ms_per_s x t ms more
    version_b      fraction=1, slowdown=1, wrong_content=false
                                                       that fraction served by a slower/wrong "version B"
    replica_death  replica*                            the replica dies at start (its requests are cut),
                                                       and comes back, cold, at end
    overhead       ms*                                 every inference request arriving is held `ms`
                                                       before the server sees it (a gateway in front)
    ignore_disconnect  replica                         a request arriving whose client hangs up keeps
                                                       decoding to its max tokens (a "zombie")
    short_rerank   rate=1                              that fraction of rerank and score answers has
                                                       one score fewer than asked (rerank.py)

Engine quirks: what real servers send that the simulator's OpenAI streams do
not, for that fraction of streamed answers (``rate`` defaults to 1, except
``cut_stream`` and ``error_in_stream``, a share to state)::

    no_done        rate                                no `data: [DONE]` at the end (transformers serve)
    no_stream_usage  rate                              no usage event, even when include_usage asks
    merge_tokens   tokens*, rate, first                `tokens` tokens in each event after the first
                                                       (`first: true`: in the first too, as hosted
                                                       APIs send them)
    role_event     rate                                a role-only event before the first token
    ping_comments  rate                                a `: ping` comment line before every event
    cut_stream     rate*                               at the first token: a role-only event, then
                                                       [DONE]; no content, no finish_reason
    error_in_stream  rate*, after_tokens               HTTP 200, then an error object in the stream
                                                       after `after_tokens` tokens, then [DONE]

``rate_limit`` without ``tenant`` limits every tenant separately (the tenant
is the request's ``tenant_header``, see SimConfig); ``burst`` defaults to
``max(1, per_second)``.  ``reset`` cuts after ``after_tokens`` tokens, or at a
seeded random token when it is omitted.  ``replica`` (stall, degrade, ramp,
ignore_disconnect) restricts the fault to one replica; omitted, it hits all
of them.  ``ramp`` is a linear slow degradation of known slope
(``ms_per_s``), for trend SLOs.
``overhead`` is time spent outside the inference server, as a proxy, gateway
or load balancer in front of it adds: a chat, completions, Responses,
Messages or embeddings request that arrives inside the window waits ``ms``
milliseconds before its handler takes its arrival time, so the client sees
the delay and none of the server's own histograms (``/metrics``) do; each
delayed request counts once in ``loadkit_sim_faults_injected_total{kind=
"overhead"}`` (per active overhead fault; overlapping ones add up).
``ignore_disconnect`` is a server that does not abort a request whose client
went away (``disconnects.py``): a chat, completions, Responses or Messages
request (streamed or not) that arrives inside the window, on ``replica`` if
given, and whose client then closes the connection keeps its place in the
queue or its batch seat and KV-cache and decodes to its max tokens at the
same pace, writing nothing more; its tokens count in
``vllm:generation_tokens_total`` as if sent and in
``loadkit_sim_tokens_after_disconnect_total``, and each such request once in
``loadkit_sim_faults_injected_total{kind="ignore_disconnect"}``.  Outside
the window (the default) a hang-up stops the request at once.  A
config file for ``loadkit sim --config sim.yaml`` (the same mapping works as
a workload's ``simulator:``)::

    preset: h100-llama3-8b
    replicas: 2
    faults:
      - {kind: error, rate: 0.02, start: 1m, end: 2m}
      - {kind: stall, duration: 2s, every: 30s, replica: 1}
      - {kind: rate_limit, tenant: acme, per_second: 5}
      - {kind: replica_death, replica: 0, start: 3m, end: 4m}
      - {kind: ignore_disconnect, start: 5m, end: 6m}

Pure data: parsing and validation only.  ``timeline.py`` turns stalls and
degradation into time, ``injector.py`` makes the per-request decisions.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

_COMMON = ("kind", "start", "end")
# kind -> (allowed parameter keys, required ones)
KINDS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "error": (("rate", "status"), frozenset({"rate"})),
    "rate_limit": (("per_second", "burst", "tenant"), frozenset({"per_second"})),
    "reset": (("rate", "after_tokens"), frozenset({"rate"})),
    "stall": (("duration", "every", "replica"), frozenset({"duration", "every"})),
    "malformed": (("rate",), frozenset({"rate"})),
    "degrade": (("percent_per_minute", "replica"), frozenset({"percent_per_minute"})),
    "ramp": (("ms_per_s", "replica"), frozenset({"ms_per_s"})),
    "version_b": (("fraction", "slowdown", "wrong_content"), frozenset()),
    "replica_death": (("replica",), frozenset({"replica"})),
    "overhead": (("ms",), frozenset({"ms"})),
    "ignore_disconnect": (("replica",), frozenset()),
    "short_rerank": (("rate",), frozenset()),
    "no_done": (("rate",), frozenset()),
    "no_stream_usage": (("rate",), frozenset()),
    "merge_tokens": (("tokens", "rate", "first"), frozenset({"tokens"})),
    "role_event": (("rate",), frozenset()),
    "ping_comments": (("rate",), frozenset()),
    "cut_stream": (("rate",), frozenset({"rate"})),
    "error_in_stream": (("rate", "after_tokens"), frozenset({"rate"})),
}
# Stream quirks of real engines (injector.Quirks); `rate` 1 unless given.
QUIRKS = ("no_done", "no_stream_usage", "merge_tokens", "role_event", "ping_comments",
          "cut_stream", "error_in_stream")


@dataclass(frozen=True)
class Fault:
    """One scheduled fault; only the parameters of its kind are meaningful."""

    kind: str
    start: float = 0.0
    end: float | None = None
    replica: int | None = None
    rate: float = 0.0
    status: int = 500
    per_second: float = 0.0
    burst: float = 0.0
    tenant: str | None = None
    after_tokens: int | None = None
    duration: float = 0.0
    every: float = 0.0
    percent_per_minute: float = 0.0
    ms_per_s: float = 0.0
    fraction: float = 1.0
    slowdown: float = 1.0
    wrong_content: bool = False
    tokens: int = 0
    first: bool = False
    ms: float = 0.0

    def active(self, t: float) -> bool:
        """Whether the fault is on at ``t`` seconds after the server started."""
        return self.start <= t and (self.end is None or t < self.end)

    def as_dict(self) -> dict[str, Any]:
        """The fault as it would be written in a schedule (defaults left out)."""
        allowed = set(_COMMON) | set(KINDS[self.kind][0])
        default = Fault(self.kind)
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name in allowed and (f.name == "kind"
                                          or getattr(self, f.name) != getattr(default, f.name))}


def parse_faults(value: Any) -> tuple[Fault, ...]:
    """Validate a schedule: a list of mappings, or its JSON text.

    Also accepts a Python literal (``str()`` of a list of dicts), because that
    is how a list travels through a ``--kebab-case`` flag built with ``str``.
    Raises ``ValueError`` naming ``faults[i].key``.
    """
    if isinstance(value, str):
        value = _decode(value)
    if value is None:
        return ()
    if isinstance(value, Mapping) or not isinstance(value, (list, tuple)):
        raise ValueError(
            "faults must be a list of mappings, each with a `kind`")
    return tuple(v if isinstance(v, Fault) else _parse_one(i, v) for i, v in enumerate(value))


def parse_seconds(value: Any, what: str) -> float:
    """``1.5``, ``"250ms"``, ``"30s"``, ``"2m"``, ``"1h"`` -> seconds (>= 0)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a duration, got a bool")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())):
        seconds = float(m[1]) * _UNITS[m[2] or "s"]
    else:
        raise ValueError(f"{what} must be a duration such as 30s, 250ms or 2m, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite duration >= 0, got {value!r}")
    return seconds


# -- private helpers ---------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:  # literals only: never evaluates code
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"faults must be a JSON list of mappings, got {text[:80]!r}") from None


def _parse_one(index: int, raw: Any) -> Fault:
    where = f"faults[{index}]"
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"{where} must be a mapping with a `kind`, got {raw!r}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    allowed, required = KINDS[kind]
    unknown = sorted(str(k) for k in raw if k not in _COMMON and k not in allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} for kind {kind!r} "
                         f"(allowed: {', '.join(_COMMON + allowed)})")
    missing = sorted(required - set(raw))
    if missing:
        raise ValueError(f"{where}: kind {kind!r} needs {', '.join(missing)}")
    values: dict[str, Any] = {"kind": kind}
    for key, v in raw.items():
        if key != "kind":
            values[key] = _PARAMS[key](v, f"{where}.{key}")
    if (kind in QUIRKS or kind == "short_rerank") and "rate" not in values:
        values["rate"] = 1.0
    if kind == "rate_limit" and "burst" not in values:
        values["burst"] = max(1.0, values["per_second"])
    fault = Fault(**values)
    if fault.end is not None and fault.end <= fault.start:
        raise ValueError(f"{where}.end must be after start ({fault.start:g} s)")
    if kind == "stall" and fault.duration >= fault.every:
        raise ValueError(f"{where}.duration must be shorter than every")
    return fault


def _fraction(v: Any, what: str) -> float:
    x = _number(v, what)
    if not 0.0 < x <= 1.0:
        raise ValueError(f"{what} must be a fraction in (0, 1], got {v!r}")
    return x


def _positive(v: Any, what: str) -> float:
    x = _number(v, what)
    if x <= 0:
        raise ValueError(f"{what} must be > 0, got {v!r}")
    return x


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _count(v: Any, what: str) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {v!r}")
    return v


def _positive_count(v: Any, what: str) -> int:
    n = _count(v, what)
    if n < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {v!r}")
    return n


def _status(v: Any, what: str) -> int:
    code = _count(v, what)
    if not 500 <= code <= 599:
        raise ValueError(f"{what} must be a 5xx status, got {v!r}")
    return code


def _burst(v: Any, what: str) -> float:
    x = _number(v, what)
    if x < 1:
        raise ValueError(f"{what} must be >= 1 (one request), got {v!r}")
    return x


def _tenant(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"{what} must be a non-empty string, got {v!r}")
    return v


def _flag(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{what} must be true or false, got {v!r}")
    return v


def _slowdown(v: Any, what: str) -> float:
    x = _number(v, what)
    if x < 1.0:
        raise ValueError(f"{what} must be >= 1 (a factor on step times), got {v!r}")
    return x


_PARAMS: dict[str, Callable[[Any, str], Any]] = {
    "start": parse_seconds,
    "end": lambda v, w: None if v is None else parse_seconds(v, w),
    "replica": _count,
    "rate": _fraction,
    "status": _status,
    "per_second": _positive,
    "burst": _burst,
    "tenant": _tenant,
    "after_tokens": _count,
    "duration": lambda v, w: _positive(parse_seconds(v, w), w),
    "every": lambda v, w: _positive(parse_seconds(v, w), w),
    "percent_per_minute": _positive,
    "ms_per_s": _positive,
    "fraction": _fraction,
    "slowdown": _slowdown,
    "wrong_content": _flag,
    "tokens": lambda v, w: _positive_count(v, w),
    "first": _flag,
    "ms": _positive,
}
