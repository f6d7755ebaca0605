"""SLOs judged over their scope so far, while the run goes, on a thread of
their own (the live metrics exporter's and the live view's).

A listener on the recorder's thread hands over each interval's histograms
(by reference: a rotated histogram is never written again) and the run's
counts per (phase, scenario, tenant): O(keys) copies, no histogram work.
The worker folds in whatever queued up and judges once (at most every
`every_s` of run time), so a slow judgement skips intervals, never delays
one; a percentile and its interval walk the histogram in Python (1-3 ms).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from loadkit.record.histogram import HdrHistogram, new_histogram
from loadkit.record.recorder import Recorder
from loadkit.result.model import Scope, SLOResult
from loadkit.slo.scopes import Phases
from loadkit.workload.slo_spec import TIME_METRICS, Objective

# completed, dropped, good, tokens, errors (by the phase sent for); then the
# served completed, good, tokens (by the phase ended in: the rates').
Counts = dict[tuple[str, str, str], list[int]]
_SERVED = {"completed": 5, "good": 6, "tokens": 7}


class SoFarJudge:
    """`publish(end_s, results)` on the worker thread after each judgement."""

    def __init__(self, objectives: list[Objective], phases: Phases, strict: bool,
                 publish: Callable[[float, list[SLOResult]], None], every_s: float = 0.0,
                 name: str = "loadkit-slo-so-far") -> None:
        self.objectives, self.phases, self.strict, self.publish = (
            objectives, phases, strict, publish)
        self.every_s = every_s
        self.metrics = {o.metric for o in objectives if o.metric in TIME_METRICS}
        self.hists: dict[tuple[str, Scope], HdrHistogram] = {
            (o.metric, Scope(o.scope)): new_histogram()
            for o in objectives if o.metric in TIME_METRICS}
        self._scopes: dict[tuple[str, str, str], tuple[Scope, ...]] = {}
        self._judged_s = -every_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, end_s: float, hists: dict, rec: Recorder) -> None:
        """On the recorder's thread: the interval's histograms of the SLOs'
        metrics, and copies of the counts so far."""
        mine = {k: h for k, h in hists.items() if k[0] in self.metrics}
        counts: Counts = {}
        for what, counter in enumerate((rec.completed, rec.dropped, rec.good, rec.output_tokens)):
            for key, n in dict(counter).items():
                counts.setdefault(key, [0] * 8)[what] += n
        for (_kind, phase, scenario, tenant), n in dict(rec.errors).items():
            counts.setdefault((phase, scenario, tenant), [0] * 8)[4] += n
        for (served, phase, scenario, tenant), n in dict(rec.served).items():
            counts.setdefault((phase, scenario, tenant), [0] * 8)[_SERVED[served]] += n
        self._queue.put((end_s, mine, counts))

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)

    def scopes(self, phase: str, scenario: str, tenant: str) -> tuple[Scope, ...]:
        key = (phase, scenario, tenant)
        hit = self._scopes.get(key)
        if hit is None:
            hit = self._scopes[key] = tuple(self.phases.scopes(phase, scenario, tenant))
        return hit

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while not self._queue.empty():  # fold whatever queued up, judge once
                items.append(self._queue.get())
            done = None in items
            latest = None
            for item in items:
                if item is None:
                    continue
                latest = item
                for (metric, phase, scenario, tenant), h in item[1].items():
                    for scope in self.scopes(phase, scenario, tenant):
                        if (acc := self.hists.get((metric, scope))) is not None:
                            acc.add(h)
            if latest is not None and not done and latest[0] >= self._judged_s + self.every_s:
                self._judged_s = latest[0]
                self.publish(latest[0], self._judge(latest[0], latest[2]))
            if done:
                return

    def _judge(self, end_s: float, counts: Counts) -> list[SLOResult]:
        from loadkit.slo.evaluate import Counts as Judged
        from loadkit.slo.evaluate import Served, evaluate  # on the worker: off the import path

        results = []
        for o in self.objectives:
            scope = Scope(o.scope)
            start, _end = self.phases.span(scope)
            if end_s <= start:
                continue  # its scope has not begun
            c = [0] * 8
            for (phase, scenario, tenant), figures in counts.items():
                if scope in self.scopes(phase, scenario, tenant):
                    c = [a + b for a, b in zip(c, figures, strict=True)]
            names = [scope.name] if scope.kind == "phase" else self.phases.measured
            seconds = sum(min(max(end_s - self.phases.start[n], 0.0), self.phases.duration[n])
                          for n in names)
            h = self.hists.get((o.metric, scope))
            results.append(evaluate(o, [h] if h is not None else [],
                                    Judged(completed=c[0], errors=c[4], dropped=c[1],
                                           duration_s=seconds, good=c[2], output_tokens=c[3],
                                           served=Served(c[5], c[6], c[7])),
                                    strict=self.strict))
        return results
