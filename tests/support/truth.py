"""Reading the test servers' own truth: their logs over HTTP, and percentiles
computed exactly as loadkit defines them (nearest rank), to compare loadkit's with."""

from __future__ import annotations

import json
import math
import urllib.request
from typing import Any


def exact_percentile(values: list[float], q: float) -> float:
    """The percentile as loadkit and HdrHistogram's Java reference define it:
    the value at the nearest rank, ceil(q * n), at least 1."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(round(q * len(ordered), 6))) - 1]


def fetch(url: str, method: str = "GET") -> Any:  # the server's JSON, as it sent it
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)
