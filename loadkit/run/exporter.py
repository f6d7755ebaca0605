"""Live metrics of the generator itself: Prometheus text while the run goes.

``loadkit run --metrics-port PORT`` serves ``/metrics`` from its own thread
(prometheus_client's text or OpenMetrics encoder, chosen by the scraper's
``Accept``). Nothing is paid per request: the exporter is a recorder listener,
called once per interval on the event loop, where it

- turns each of the interval's HdrHistograms (latency, TTFT, ITL, lateness)
  into increments of a fixed set of Prometheus buckets (two numpy reductions
  over the histogram's counts: ~25 µs each),
- copies the recorder's cumulative counters (a few dozen keys),
- reads the live judge's last closed window of each windowed SLO,

and swaps the result in as one immutable snapshot under a lock; a scrape reads
the snapshot and writes it out on the server's thread. SLOs judged over the
run so far (percentiles, error rate, throughput, goodput) are evaluated every
5 s of run time on a worker thread of their own (a percentile and its
confidence interval walk the histogram in Python: 1-3 ms each, kept off the
loop); the interval's histograms are handed to it by reference (the recorder
never touches a rotated histogram again).

Metrics (seconds, Prometheus conventions; ``tenant``/``scenario``/``phase`` as
in the workload):

- ``loadkit_requests_total`` (counter; tenant, scenario, phase, outcome):
  outcome ``completed``, an error kind (``timeout``, ``http_5xx``, ...) or
  ``dropped``; ``loadkit_output_tokens_total`` (tenant, scenario, phase).
- ``loadkit_latency_seconds`` (end - intended), ``loadkit_ttft_seconds``,
  ``loadkit_itl_seconds``, ``loadkit_lateness_seconds`` (sent - intended):
  histograms (tenant, scenario) with the bounds of ``BUCKETS_S``.
- ``loadkit_in_flight``; ``loadkit_slo_state`` (slo, scope): 1 pass, 0 fail,
  -1 inconclusive, absent until first judged.
- ``loadkit_generator_cpu_percent`` (last interval, one core = 100),
  ``loadkit_host_cpu_steal_percent``, ``loadkit_run_elapsed_seconds``,
  ``loadkit_run_planned_seconds``, ``loadkit_run_finished`` (1 once judged),
  ``loadkit_lateness_bound_seconds``, ``loadkit_intervals_total``,
  ``loadkit_exporter_update_seconds`` (``_max_seconds``: this listener's cost
  in the last, the worst, interval), ``loadkit_run_info`` (run_id, workload,
  target, version), and prometheus_client's ``process_*`` (CPU seconds,
  resident memory, ...).

Histograms cover every phase (phases follow one another in time); counters
carry the phase so that they add up to run.json's measured counts. A windowed
SLO's state is its last closed window's verdict; any other SLO that can be
judged live is judged on its scope so far; telemetry, isolation, trend and
recovery-time SLOs are known at the end only. Once the run is judged, every
SLO shows its final verdict and ``loadkit_run_finished`` is 1.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.utils import floatToGoString

from loadkit.record.histogram import HdrHistogram, bucket_counts, new_histogram
from loadkit.record.recorder import Interval, Recorder
from loadkit.result.model import Verdict
from loadkit.run.so_far import SoFarJudge
from loadkit.workload.slo_spec import TIME_METRICS

if TYPE_CHECKING:
    from loadkit.result.model import RunResult
    from loadkit.slo.live import LiveJudge
    from loadkit.slo.scopes import Phases
    from loadkit.workload.slo_spec import Objective

__all__ = ["BUCKETS_S", "HISTOGRAMS", "STATE", "LiveMetrics", "buckets_of"]  # server: metrics_server.py

# Upper bounds in seconds (and +Inf): 50 µs (lateness) to 5 min (long generations).
BUCKETS_S = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015,
             0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
             5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)
# Recorder metric -> Prometheus histogram name, help.
HISTOGRAMS = {
    "latency": ("loadkit_latency_seconds",
                "End-to-end latency: end - intended (corrected for coordinated omission)."),
    "ttft": ("loadkit_ttft_seconds", "Time to first token: first token - sent."),
    "itl": ("loadkit_itl_seconds", "Inter-token latency: every gap between token events."),
    "lateness": ("loadkit_lateness_seconds", "The generator's own delay: sent - intended."),
}
# SLOs over their scope so far are judged at most this often (run seconds): a
# percentile with its interval costs 1-3 ms of Python, and it changes slowly.
JUDGE_EVERY_S = 5.0
STATE = {Verdict.PASS: 1.0, Verdict.FAIL: 0.0, Verdict.INCONCLUSIVE: -1.0}
# SLO metrics judged live over the scope so far (the rest: telemetry, isolation).
_LIVE = (*TIME_METRICS, "error_rate", "goodput", "throughput", "output_tokens_per_s")
_LE = [floatToGoString(b) for b in BUCKETS_S] + ["+Inf"]


def buckets_of(h: HdrHistogram) -> tuple[np.ndarray, int]:
    """(counts per bucket of BUCKETS_S then +Inf, not cumulative; sum in µs)."""
    return bucket_counts(h, BUCKETS_S)


@dataclass
class _Hist:
    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(_LE), dtype=np.int64))
    sum_us: int = 0


@dataclass(frozen=True)
class _Snapshot:
    """Everything a scrape writes out (but the SLO states): never mutated."""

    requests: tuple[tuple[tuple[str, str, str, str], int], ...] = ()
    tokens: tuple[tuple[tuple[str, str, str], int], ...] = ()
    # (metric, tenant, scenario, cumulative bucket counts, sum in seconds)
    hists: tuple[tuple[str, str, str, tuple[int, ...], float], ...] = ()
    in_flight: int = 0
    elapsed_s: float = 0.0
    cpu_percent: float | None = None
    steal_percent: float | None = None
    intervals: int = 0


class LiveMetrics:
    """The exporter: a recorder listener that feeds a prometheus_client collector.

    Made before the run (its layout is computed here, off the clock), handed
    to ``execute`` in ``RunOptions.metrics``, which calls ``attach`` and, once
    the run is judged, ``finish``. ``registry`` is what a server serves."""

    def __init__(self) -> None:
        buckets_of(new_histogram())  # the bucket layout, computed now (off the clock)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        ProcessCollector(registry=self.registry)
        self._lock = threading.Lock()
        self._snapshot = _Snapshot()
        self._windowed: dict[str, tuple[str, float]] = {}  # the listener's (windows)
        self._so_far: dict[str, tuple[str, float]] = {}  # the worker's
        self._final: dict[str, tuple[str, float]] | None = None
        self._interrupted = 0  # run.json counts.unfinished, once the run is over
        self._info: dict[str, str] = {}
        self._planned_s = 0.0
        self._lateness_bound_s: float | None = None
        self._hists: dict[tuple[str, str, str], _Hist] = {}
        self._recorder: Recorder | None = None
        self._judge: LiveJudge | None = None
        self._in_flight: Callable[[], int] = lambda: 0
        self._worker: SoFarJudge | None = None
        self._update_s = self._update_max_s = 0.0
        # The listener's cost in the last hour of 1-s intervals: wall time on the
        # loop, and its CPU time (without waits for the GIL or a core).
        self.update_ns: deque[int] = deque(maxlen=3600)
        self.update_cpu_ns: deque[int] = deque(maxlen=3600)

    # -- the run's side (event loop) ------------------------------------------------

    def attach(self, recorder: Recorder, *, phases: Phases, objectives: Sequence[Objective],
               judge: LiveJudge | None, strict: bool, in_flight: Callable[[], int],
               info: dict[str, str], planned_s: float, lateness_bound_s: float) -> None:
        """Listen to `recorder`'s rotations (append last: after the health probe
        and the live judge, whose figures it reads)."""
        self._recorder, self._judge, self._in_flight = recorder, judge, in_flight
        self._info, self._planned_s, self._lateness_bound_s = info, planned_s, lateness_bound_s
        windowed = {t.objective.name for t in judge.tracked
                    if t.objective.window_s is not None} if judge else set()
        # Trends (and recovery time) are fitted once the run has ended.
        live = [o for o in objectives
                if o.metric in _LIVE and o.trend is None and o.name not in windowed]
        if live:
            self._worker = SoFarJudge(
                live, phases, strict, lambda _end_s, results: self._publish_so_far(
                    {r.name: (r.scope, STATE[r.verdict]) for r in results}),
                every_s=JUDGE_EVERY_S, name="loadkit-metrics-slo")
            self._worker.start()
        recorder.events.interval_closed.add_listener(self.on_interval)

    def on_interval(self, interval: Interval, hists: dict, _keyed: Counter) -> None:
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        rec = self._recorder
        assert rec is not None, "attach() first"
        for (metric, _phase, scenario, tenant), h in hists.items():
            if metric in HISTOGRAMS and h.get_total_count():
                counts, sum_us = buckets_of(h)
                acc = self._hists.get((metric, tenant, scenario))
                if acc is None:
                    acc = self._hists[(metric, tenant, scenario)] = _Hist()
                acc.buckets += counts
                acc.sum_us += sum_us
        requests: dict[tuple[str, str, str, str], int] = {}
        for (phase, scenario, tenant), n in rec.completed.items():
            requests[(tenant, scenario, phase, "completed")] = n
        for (kind, phase, scenario, tenant), n in rec.errors.items():
            requests[(tenant, scenario, phase, kind)] = n
        for (phase, scenario, tenant), n in rec.dropped.items():
            requests[(tenant, scenario, phase, "dropped")] = n
        tokens = tuple(((t, s, p), n) for (p, s, t), n in rec.output_tokens.items())
        hist_rows = tuple((m, t, s, tuple(np.cumsum(a.buckets).tolist()), a.sum_us / 1e6)
                          for (m, t, s), a in self._hists.items())
        windowed = {}
        for t in self._judge.tracked if self._judge else ():
            if t.objective.window_s is not None and t.windows:
                windowed[t.objective.name] = (t.objective.scope, STATE[t.windows[-1].verdict])
        snapshot = _Snapshot(
            requests=tuple(sorted(requests.items())), tokens=tokens, hists=hist_rows,
            in_flight=self._in_flight(), elapsed_s=interval.end_s,
            cpu_percent=interval.cpu_percent, steal_percent=interval.steal_percent,
            intervals=self._snapshot.intervals + 1)
        cost_ns = time.perf_counter_ns() - t0
        with self._lock:
            self._snapshot, self._windowed = snapshot, windowed
            self._update_s = cost_ns / 1e9
            self._update_max_s = max(self._update_max_s, self._update_s)
        self.update_ns.append(cost_ns)
        self.update_cpu_ns.append(time.thread_time_ns() - c0)
        if self._worker is not None:  # last: its thread wakes and wants the GIL
            self._worker.put(interval.end_s, hists, rec)

    def finish(self, result: RunResult) -> None:
        """The run is judged: every SLO's final verdict, run finished."""
        if self._worker is not None:
            self._worker.stop()
        final = {s.name: (str(s.scope), STATE[s.verdict]) for s in result.slos}
        with self._lock:
            self._final = final
            self._interrupted = result.counts.unfinished

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def _publish_so_far(self, states: dict[str, tuple[str, float]]) -> None:
        with self._lock:
            self._so_far = states

    # -- the scrape's side (server thread) -----------------------------------------

    def collect(self) -> Iterator[Any]:
        with self._lock:
            snap, final, interrupted = self._snapshot, self._final, self._interrupted
            update_s, update_max_s = self._update_s, self._update_max_s
            slos = final if final is not None else {**self._so_far, **self._windowed}
        requests = CounterMetricFamily(
            "loadkit_requests", "Requests by outcome: completed, an error kind or dropped.",
            labels=["tenant", "scenario", "phase", "outcome"])
        for labels, n in snap.requests:
            requests.add_metric(labels, n)
        yield requests
        tokens = CounterMetricFamily("loadkit_output_tokens",
                                     "Output tokens of completed requests.",
                                     labels=["tenant", "scenario", "phase"])
        for labels3, n in snap.tokens:
            tokens.add_metric(labels3, n)
        yield tokens
        for metric, (name, doc) in HISTOGRAMS.items():
            fam = HistogramMetricFamily(name, doc, labels=["tenant", "scenario"])
            for m, tenant, scenario, cumulative, sum_s in snap.hists:
                if m == metric:
                    fam.add_metric([tenant, scenario], list(zip(_LE, cumulative)), sum_s)
            yield fam
        yield GaugeMetricFamily("loadkit_in_flight", "Requests sent and not yet answered.",
                                value=snap.in_flight)
        state = GaugeMetricFamily(
            "loadkit_slo_state", "Each SLO: 1 pass, 0 fail, -1 inconclusive (windowed: the "
            "last closed window; else the scope so far; final once the run is judged).",
            labels=["slo", "scope"])
        for slo, (scope, verdict) in sorted(slos.items()):
            state.add_metric([slo, scope], verdict)
        yield state
        gauges: tuple[tuple[str, str, float | None], ...] = (
                ("loadkit_generator_cpu_percent",
                 "The generator's CPU over the last interval (one core = 100).", snap.cpu_percent),
                ("loadkit_host_cpu_steal_percent",
                 "The host's CPU steal over the last interval.", snap.steal_percent),
                ("loadkit_run_elapsed_seconds", "End of the last published interval.",
                 snap.elapsed_s),
                ("loadkit_run_planned_seconds", "The schedule's length.", self._planned_s),
                ("loadkit_run_finished", "1 once the run is over and judged.",
                 1.0 if final is not None else 0.0),
                ("loadkit_lateness_bound_seconds",
                 "Lateness p99 above this marks the run untrusted.", self._lateness_bound_s),
                ("loadkit_exporter_update_seconds",
                 "This exporter's cost on the event loop in the last interval.", update_s),
                ("loadkit_exporter_update_max_seconds",
                 "This exporter's worst cost on the event loop in one interval.",
                 update_max_s))
        for name, doc, value in gauges:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=value)
        yield CounterMetricFamily("loadkit_intervals", "Intervals published.",
                                  value=snap.intervals)
        yield CounterMetricFamily(
            "loadkit_requests_interrupted", "Requests in flight when an interrupt (Ctrl-C, "
            "SIGTERM, a stop from the live view) cancelled them unjudged (run.json "
            "counts.unfinished); set once the run is over.", value=interrupted)
        if self._info:
            info = InfoMetricFamily("loadkit_run", "The run being measured.")
            info.add_metric([], self._info)
            yield info
