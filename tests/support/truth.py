"""Reading the test servers' own truth: their logs over HTTP, and percentiles
computed exactly as hdrh defines them, to compare loadkit's with."""

from __future__ import annotations

import json
import urllib.request
from typing import Any


def exact_percentile(values: list[float], q: float) -> float:
    """The percentile as hdrh defines it: the value at rank round(q * n),
    at least 1 (nearest rank, but rounded where that would take the ceiling)."""
    ordered = sorted(values)
    return ordered[max(1, int(q * len(ordered) + 0.5)) - 1]


def fetch(url: str, method: str = "GET") -> Any:  # the server's JSON, as it sent it
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)
