"""How many independent observations a run's requests are worth.

Latencies through a queue are correlated: the requests of a congested minute
are slow together, so 10,000 of them carry far fewer independent
observations than 10,000. The verdicts count requests beyond a threshold as
if each were an independent coin (slo/confidence.py); here the variance of
that count is measured from the run's own intervals instead, and

    n_eff = n · (binomial variance of the count) / (its measured variance),

capped at n: a run is never credited with more evidence than requests.

Each interval adds its (beyond, attempts) counts to a series of batch sums;
when the series reaches 2·BATCHES, adjacent batches merge and the batch
doubles, so memory stays flat over a day. The variance of the total comes
from the batch series' autocovariances, summed in pairs while the pair sums
stay positive and decreasing (Geyer's initial monotone sequence): batches
still correlated with their neighbours count as such.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BATCHES = 32  # the batch series holds 32 to 64 batch sums


class ShareBatches:
    """Per-interval counts beyond a threshold, in batches: n_eff of their share."""

    __slots__ = ("_count", "_k", "_n", "_open_k", "_open_n", "size")

    def __init__(self) -> None:
        self._k: list[int] = []
        self._n: list[int] = []
        self.size = 1  # intervals per batch
        self._open_k = self._open_n = self._count = 0

    def add(self, k: int, n: int) -> None:
        """One interval: k of its n attempts beyond the threshold."""
        self._open_k += k
        self._open_n += n
        self._count += 1
        if self._count < self.size:
            return
        self._k.append(self._open_k)
        self._n.append(self._open_n)
        self._open_k = self._open_n = self._count = 0
        if len(self._k) >= 2 * BATCHES:
            self._k = [a + b for a, b in zip(self._k[::2], self._k[1::2])]
            self._n = [a + b for a, b in zip(self._n[::2], self._n[1::2])]
            self.size *= 2

    def n_eff(self) -> float | None:
        """None before any attempt."""
        k, n = list(self._k), list(self._n)
        if self._open_n:
            k.append(self._open_k)
            n.append(self._open_n)
        return effective_samples(k, n)


def effective_samples(k: Sequence[int], n: Sequence[int]) -> float | None:
    """n_eff of the share sum(k) / sum(n) from consecutive batches' counts
    (None: no attempt). With none (or all) beyond the threshold, or fewer
    than 8 batches, nothing shows a correlation: n_eff is n."""
    total_n = float(sum(n))
    if total_n <= 0:
        return None
    p = sum(k) / total_n
    if p <= 0.0 or p >= 1.0 or len(k) < 8:
        return total_n
    d = np.asarray(k, dtype=float) - p * np.asarray(n, dtype=float)
    m = len(d)
    gamma = np.array([float(d[: m - h] @ d[h:]) / m for h in range(m)])
    # Geyer: Gamma_t = gamma(2t) + gamma(2t+1), summed while positive, each
    # no larger than the one before; var(sum)/m = -gamma(0) + 2 sum Gamma_t.
    total, last = 0.0, np.inf
    for t in range(m // 2):
        pair = gamma[2 * t] + gamma[2 * t + 1]
        if pair <= 0.0:
            break
        last = min(last, pair)
        total += last
    var_sum = m * (2.0 * total - gamma[0])
    if var_sum <= 0.0:
        return total_n
    return min(total_n, total_n * total_n * p * (1.0 - p) / var_sum)
