"""Simulator configuration.

Every knob is a field of the frozen :class:`SimConfig` dataclass, and every
field carries its own validation rule and help text in ``metadata``.  That is
what keeps the class easy to grow: adding a field (batch size, queue depth,
cold-start delay, fault rates, ...) automatically gives it validation in
``from_mapping``/``__post_init__`` and a ``--kebab-case`` flag in
``python -m loadkit.sim``, with no other code to touch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _knob(default: Any, help: str, minimum: float | None = None) -> Any:
    """A dataclass field with a lower bound and help text attached."""
    return field(default=default, metadata={"help": help, "min": minimum})


@dataclass(frozen=True)
class SimConfig:
    """Timing and identity of the simulated inference server.

    Instances are immutable so one config can be shared by every request
    handler without copying; use ``dataclasses.replace`` to derive variants.
    Invalid values raise ``ValueError`` naming the offending field, whether
    the instance is built directly or through :meth:`from_mapping`.
    """

    ttft_ms: float = _knob(20.0, "time to first token (prefill), in ms", 0.0)
    itl_ms: float = _knob(10.0, "delay between successive tokens, in ms", 0.0)
    output_tokens: int = _knob(
        16, "output length when a request gives no max_tokens", 1
    )
    seed: int = _knob(0, "seed for generated text and ids", 0)
    model: str = _knob("loadkit-sim", "model name reported by the server")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check(f, getattr(self, f.name)))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build a config from a plain mapping (e.g. parsed YAML or JSON).

        Unknown keys are rejected rather than ignored, so a typo such as
        ``itl: 5`` fails loudly instead of silently running with defaults.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"sim config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(
                f"unknown sim config key(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**dict(data))


def _check(f: dataclasses.Field, value: Any) -> Any:
    """Validate (and lightly coerce) one field value; raise naming the field."""
    name = f.name
    # Annotations are strings because of `from __future__ import annotations`.
    kind = f.type if isinstance(f.type, str) else f.type.__name__
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
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    minimum = f.metadata.get("min")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum:g}, got {value!r}")
    return value
