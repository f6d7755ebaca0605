"""Arrival processes and the run's schedule: pure, seeded, lazy."""

from loadkit.arrivals.schedule import (
                                       ClosedLoop,
                                       Mix,
                                       Slot,
                                       closed_loops,
                                       phase_arrivals,
                                       phase_starts,
                                       sample_tokens,
                                       schedule,
)
from loadkit.workload.traces import TraceError, TraceRow, load_trace

__all__ = ["ClosedLoop", "Mix", "Slot", "TraceError", "TraceRow", "closed_loops",
           "load_trace", "phase_arrivals", "phase_starts", "sample_tokens", "schedule"]
