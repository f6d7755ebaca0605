"""Parsing of human quantities in workload files: durations and byte sizes.

Pure functions raising ValueError, so pydantic reports them at the right key.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_SCALE = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_SIZE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_SCALE = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9,
               "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def parse_duration(value: object) -> float:
    """'250ms', '30s', '5m', '1h' or a bare number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 250ms or 5m")
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _DURATION_SCALE[m.group(2)]
    raise ValueError(f"expected a duration such as 30s, 250ms or 5m, got {value!r}")


def parse_size(value: object) -> int:
    """'10MiB', '512KB' or a bare number of bytes -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            return int(m.group(1)) * _SIZE_SCALE[m.group(2)]
    raise ValueError(f"expected a size such as 10MiB or 4096, got {value!r}")
