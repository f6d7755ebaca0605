"""Parsing of human quantities in workload files: durations and byte sizes,
and the strict base every workload model shares.

Pure functions raising ValueError, so pydantic reports them at the right key.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, model_validator

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_SCALE = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_SCALE = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


MAX_TOKENS = 10_000_000  # a token count past this is a typo (a scenario's, a trace row's)
MAX_DURATION_S = 30 * 86400.0  # a month: longer is a typo, and would overflow schedules


def parse_duration(value: object) -> float:
    """'250ms', '30s', '5m', '1h' or a bare number of seconds -> seconds."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _DURATION_SCALE[m.group(2)]
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"expected a duration such as 30s, 250ms or 5m, got {value!r}")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than 30 days")
    return seconds


def has_time_unit(text: str) -> bool:
    """'50ms', '2 s': a duration written with its unit (not a bare number)."""
    m = _DURATION.match(text)
    return bool(m and m.group(2))


def parse_size(value: object) -> int:
    """'10MiB', '512KB' or a bare number of bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_SCALE[m.group(2)]
    raise ValueError(f"expected a size such as 10MiB or 4096, got {value!r}")


def _takes_number(annotation: Any) -> bool:
    """int or float, alone, in a union or in a container, where bool is not meant."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    if get_origin(annotation) is Literal or bool in args:
        return False
    return any(_takes_number(a) for a in args)


def _has_bool(value: object) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, bool) for v in value)
    return isinstance(value, bool)


class Strict(BaseModel):
    """Unknown keys, infinities and NaNs are errors; specs never change."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, data: object) -> object:
        # pydantic reads true as 1 where a number is due: YAML's `yes`/`on`
        # would quietly become a rate of 1/s or a cv of 1.
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                key = field.alias if field.alias in data else name
                if _has_bool(data.get(key)) and _takes_number(field.annotation):
                    raise ValueError(f"`{key}`: expected a number, not true/false")
        return data


Seconds = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_size)]

_T = TypeVar("_T", bound=Any)


def ordered(spec: _T) -> _T:
    """A `{min, max}` spec's check (its model validator): max is not below min."""
    if spec.max < spec.min:
        raise ValueError("max must be >= min")
    return spec
