"""The `why` part of a run in words, shared by summary.md, JUnit and the
HTML report: the causes named for a breached SLO, and the mean request's
time by the server's own timers."""

from __future__ import annotations

from loadkit.result.model import Cause, Decomposition, Why


def cause_line(cause: Cause) -> str:
    return f"{cause.title}: {'; '.join(cause.evidence)}"


def why_line(why: Why | None) -> str | None:
    """The first cause in one line (None: none named)."""
    return cause_line(why.causes[0]) if why and why.causes else None


def split_line(d: Decomposition | None) -> str | None:
    """`545 ms = queue 0 + prefill 40 + decode 504 + outside the server 1.2`,
    with what the server timed; None when it timed nothing."""
    if d is None or d.server_ms is None:
        return None
    parts = [(name, v) for name, v in (("queue", d.queue_ms), ("prefill", d.prefill_ms),
                                       ("decode", d.decode_ms)) if v is not None]
    if len(parts) < 3:
        parts = [("the server", d.server_ms)]
    said = " + ".join(f"{name} {v:,.1f}" for name, v in parts)
    # The server's scrapes and loadkit's intervals end at different instants,
    # so each side's mean covers slightly different requests.
    below = " (below zero: the server's scrapes and loadkit's intervals cover slightly " \
        "different requests)" if (d.remainder_ms or 0.0) < 0 else ""
    return (f"mean request {d.client_ms:,.1f} ms = {said} + outside the server "
            f"{d.remainder_ms:,.1f} ms{below} ({d.requests:,} requests timed by loadkit, "
            "split by the server's own timers)")
