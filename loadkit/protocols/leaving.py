"""Clients that leave (`abandon:`), as per-request policies any adapter
hands the engine: which requests may leave and when, and when they come
back. Draws are seeded per scenario and tenant, in the order requests are
sent; the engine carries them out whatever the transport (closing an
HTTP/1.1 connection, cancelling a gRPC stream)."""

from __future__ import annotations

import random
from collections.abc import Callable

from loadkit.arrivals.schedule import sample_tokens, sample_wait
from loadkit.engine.adapter import Leave
from loadkit.workload.scenarios import Abandon


def leave_policy(a: Abandon | None, name: str, seed: str
                 ) -> Callable[[], Leave | None] | None:
    """Per request: whether its client may leave (`share`), and when."""
    if a is None:
        return None
    rng = random.Random(f"{seed}:{name}:abandon")

    def draw() -> Leave | None:
        if rng.random() >= a.share:
            return None
        return Leave(patience_s=sample_wait(a.patience, rng) if a.patience is not None else None,
                     read_tokens=sample_tokens(a.read_tokens, rng)
                     if a.read_tokens is not None else None,
                     on_tool_call=a.on_tool_call)
    return draw


def retry_policy(a: Abandon | None, name: str, seed: str
                 ) -> tuple[Callable[[], float], int] | None:
    """(seconds until a client that left comes back, drawn per retry; the
    most times), or None."""
    retry = a.retry if a is not None else None
    if retry is None:
        return None
    rng = random.Random(f"{seed}:{name}:retry")
    return (lambda: sample_wait(retry.after, rng)), retry.max
