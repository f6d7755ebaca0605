"""Noisy neighbours: how much one tenant's tail suffers when another spikes.

A tenant *spikes* in a measured phase when its scheduled rate there is at
least twice its lowest rate over the measured phases. For each victim tenant,
the isolation ratio is its latency p99 over the phases where some *other*
tenant spikes, divided by its p99 over the quiet phases (1.0 = perfectly
isolated). It needs both kinds of phase; a p99 from fewer than 1,000 samples
is reported but makes an SLO on it inconclusive. Only answered requests
count: a victim turned away with errors shows in its error rate instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from loadkit.record.histogram import HdrHistogram, merged, percentile_us
from loadkit.result.model import Isolation

SPIKE_FACTOR = 2.0


def spiking(rates: Mapping[str, Mapping[str, float]]) -> dict[str, set[str]]:
    """tenant -> phases where it spikes, from rates[tenant][phase] (req/s)."""
    out = {}
    for tenant, by_phase in rates.items():
        low = min(by_phase.values(), default=0.0)
        out[tenant] = {p for p, r in by_phase.items()
                       if r > 0 and len(by_phase) > 1 and r >= SPIKE_FACTOR * low}
    return out


def isolation(rates: Mapping[str, Mapping[str, float]],
              latency: Mapping[tuple[str, str], HdrHistogram]) -> dict[str, Isolation]:
    """Per tenant: ratio (or None), the phases compared and both p99s.

    `latency[(tenant, phase)]` is the tenant's latency histogram in a phase."""
    spikes = spiking(rates)
    out = {}
    for victim, by_phase in rates.items():
        loud = {p for other, ps in spikes.items() if other != victim for p in ps}
        quiet = set(by_phase) - loud - spikes[victim]  # its own spikes are no baseline
        entry = Isolation(spike_phases=sorted(loud), quiet_phases=sorted(quiet))
        if loud and quiet:
            h_loud = merged(latency[(victim, p)] for p in loud if (victim, p) in latency)
            h_quiet = merged(latency[(victim, p)] for p in quiet if (victim, p) in latency)
            counts = {"samples_spike": h_loud.get_total_count(),
                      "samples_quiet": h_quiet.get_total_count()}
            if all(counts.values()):
                a = percentile_us(h_loud, 99.0) / 1000.0
                b = percentile_us(h_quiet, 99.0) / 1000.0
                counts |= {"p99_spike_ms": a, "p99_quiet_ms": b, "ratio": round(a / b, 4)}
            entry = entry.model_copy(update=counts)
        out[victim] = entry
    return out
