"""Per-request fault decisions: how long a request is held before the server
sees it (``overhead``), who is turned away at the door, the fate of each
answer that is let in (cut, broken chunk, served by version B), and whether
it ignores its client's hang-up (``ignore_disconnect``).

Every random draw comes from a generator seeded by (config seed, fault
index), so a run is reproducible: the n-th request that meets a fault gets
the n-th draw.  Times are loop-clock seconds; schedules count from
``origin``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .faults import QUIRKS, Fault


@dataclass(frozen=True, slots=True)
class Quirks:
    """How one streamed answer departs from the simulator's clean OpenAI
    stream, as real engines do: a field per fault kind of faults.QUIRKS."""

    no_done: bool = False
    no_stream_usage: bool = False
    merge_tokens: int = 0  # tokens per event after the first; 0: the server's stream_interval
    merge_first: bool = False  # the first event carries merge_tokens tokens too
    role_event: bool = False
    ping_comments: bool = False
    cut_stream: bool = False
    error_in_stream: int = -1  # an error object in the stream before token i; -1 never


CLEAN = Quirks()


@dataclass(frozen=True, slots=True)
class Rejection:
    """An answer given instead of inference (HTTP status and OpenAI error)."""

    kind: str  # the fault kind, for the injected-faults counter
    status: int
    message: str
    err_type: str
    code: str | None = None
    retry_after: int | None = None  # seconds, for 429


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to one admitted answer; token indices are 0-based."""

    cut_at: int = -1  # close the connection before token i (n: after the last); -1 never
    malformed_at: int = -1  # token i's chunk is replaced by broken JSON; -1 never
    version: str = "a"
    slowdown: float = 1.0  # factor on prefill and step times
    wrong_content: bool = False
    quirks: Quirks = CLEAN


HEALTHY = Fate()


class Injector:
    """The request-level faults of one server run."""

    def __init__(self, faults: Iterable[Fault], seed: int, origin: float) -> None:
        self.origin = origin
        indexed = list(enumerate(faults))
        self._rng = {i: random.Random(f"{seed}:fault:{i}") for i, _ in indexed}
        self._limits = [(i, f) for i, f in indexed if f.kind == "rate_limit"]
        self._errors = [(i, f) for i, f in indexed if f.kind == "error"]
        self._resets = [(i, f) for i, f in indexed if f.kind == "reset"]
        self._malformed = [(i, f) for i, f in indexed if f.kind == "malformed"]
        self._versions = [(i, f) for i, f in indexed if f.kind == "version_b"]
        self._quirks = [(i, f) for i, f in indexed if f.kind in QUIRKS]
        self._overheads = [f for _, f in indexed if f.kind == "overhead"]
        self._ignores = [f for _, f in indexed if f.kind == "ignore_disconnect"]
        self._shorts = [(i, f) for i, f in indexed if f.kind == "short_rerank"]
        self._buckets: dict[tuple[int, str], list[float]] = {}
        self.injected: Counter[str] = Counter()  # fault kind -> times applied
        # Fast-path switches: with no such faults the server skips the calls.
        self.screens = bool(self._limits or self._errors)
        self.decides_fate = bool(self._resets or self._malformed or self._versions
                                 or self._quirks)
        self.versioned = bool(self._versions)
        self.delays = bool(self._overheads)

    def may_ignore_disconnect(self, now: float) -> bool:
        """Whether a request arriving at ``now`` might ignore its client's
        hang-up: an ``ignore_disconnect`` fault is on (on some replica)."""
        if not self._ignores:
            return False
        rel = now - self.origin
        return any(f.active(rel) for f in self._ignores)

    def ignores_disconnect(self, now: float, replica: int) -> bool:
        """Whether a request that arrived at ``now`` and went to ``replica``
        keeps generating when its client hangs up (counted in ``injected``
        only when one does: ``disconnects.py``)."""
        rel = now - self.origin
        return any(f.active(rel) and (f.replica is None or f.replica == replica)
                   for f in self._ignores)

    def short_scores(self, now: float) -> bool:
        """Whether a rerank or score answer to a request arriving at ``now``
        leaves one score out (``short_rerank``)."""
        rel = now - self.origin
        for i, f in self._shorts:
            if f.active(rel) and (f.rate >= 1.0 or self._rng[i].random() < f.rate):
                self.injected["short_rerank"] += 1
                return True
        return False

    def overhead(self, now: float) -> float:
        """Seconds a request arriving at ``now`` spends in front of the server
        (the active ``overhead`` faults, added up); 0.0 when none is on."""
        rel = now - self.origin
        extra = 0.0
        for f in self._overheads:
            if f.active(rel):
                self.injected["overhead"] += 1
                extra += f.ms / 1000.0
        return extra

    def screen(self, now: float, tenant: str) -> Rejection | None:
        """A 429 or 5xx for this request, or None to let it in."""
        rel = now - self.origin
        for i, f in self._limits:
            if f.active(rel) and (f.tenant is None or f.tenant == tenant):
                wait = self._take(i, f, tenant, now)
                if wait > 0:
                    self.injected["rate_limit"] += 1
                    return Rejection(
                        "rate_limit", 429,
                        f"Rate limit reached for tenant {tenant!r}: {f.per_second:g} "
                        f"requests per second (burst {f.burst:g}). Retry later.",
                        "rate_limit_error", "rate_limit_exceeded",
                        retry_after=max(1, math.ceil(wait)))
        for i, f in self._errors:
            if f.active(rel) and self._rng[i].random() < f.rate:
                self.injected["error"] += 1
                return Rejection("error", f.status, "The simulated server failed "
                                 "(an injected error).", "server_error")
        return None

    def fate(self, now: float, n_tokens: int) -> Fate:
        """Decide, at admission, what will happen to an answer of n tokens."""
        rel = now - self.origin
        cut_at = malformed_at = -1
        version, slowdown, wrong = "a", 1.0, False
        for i, f in self._resets:
            if cut_at < 0 and f.active(rel) and self._rng[i].random() < f.rate:
                self.injected["reset"] += 1
                cut_at = (min(f.after_tokens, n_tokens) if f.after_tokens is not None
                          else self._rng[i].randrange(n_tokens))
        for i, f in self._malformed:
            if malformed_at < 0 and f.active(rel) and self._rng[i].random() < f.rate:
                self.injected["malformed"] += 1
                malformed_at = self._rng[i].randrange(n_tokens)
        for i, f in self._versions:
            if version == "a" and f.active(rel) and self._rng[i].random() < f.fraction:
                self.injected["version_b"] += 1
                version, slowdown, wrong = "b", f.slowdown, f.wrong_content
        quirks = self._quirks_for(rel, n_tokens) if self._quirks else CLEAN
        if cut_at < 0 and malformed_at < 0 and version == "a" and quirks is CLEAN:
            return HEALTHY
        return Fate(cut_at, malformed_at, version, slowdown, wrong, quirks)

    def _quirks_for(self, rel: float, n_tokens: int) -> Quirks:
        on: dict[str, bool | int] = {}
        for i, f in self._quirks:
            if f.active(rel) and (f.rate >= 1.0 or self._rng[i].random() < f.rate):
                self.injected[f.kind] += 1
                if f.kind == "merge_tokens":
                    on[f.kind], on["merge_first"] = f.tokens, f.first
                elif f.kind == "error_in_stream":  # before the last token at the latest
                    on[f.kind] = (min(f.after_tokens, n_tokens - 1) if f.after_tokens is not None
                                  else self._rng[i].randrange(n_tokens))
                else:
                    on[f.kind] = True
        return Quirks(**on) if on else CLEAN  # type: ignore[arg-type]  # bool | int by kind

    def _take(self, index: int, f: Fault, tenant: str, now: float) -> float:
        """Take one token from the bucket; return 0, or seconds until one is free."""
        bucket = self._buckets.get((index, tenant))
        if bucket is None:  # a new tenant starts with a full bucket
            bucket = self._buckets[(index, tenant)] = [f.burst, now]
        tokens = min(f.burst, bucket[0] + (now - bucket[1]) * f.per_second)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / f.per_second
