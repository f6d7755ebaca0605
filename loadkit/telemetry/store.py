"""Where telemetry samples go, and the thread that takes them.

Each source owns one :class:`Store` (so no locks: only its poller thread
writes it, and the collector reads it after the thread has stopped). A
series is a named pair of ``array('d')`` (monotonic seconds, value): about
16 bytes a point, so an hour of eight GPUs at 250 ms fits. Sources start
before the run's zero is fixed; the collector shifts times onto the run's
axis at the end.
Series carry a canonical ``metric`` name and ``labels`` so derived figures
(derive.py) never parse keys.
"""

from __future__ import annotations

import math
import threading
import time
from array import array
from collections.abc import Callable


class Store:
    """Named time series; times in monotonic seconds."""

    def __init__(self) -> None:
        self.series: dict[str, dict] = {}

    def add(self, key: str, value: float, t_ns: int, *, metric: str, unit: str,
            kind: str = "gauge", labels: dict[str, str] | None = None,
            source: str = "") -> None:
        """One point; non-finite values are dropped (run.json holds no NaN)."""
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = {"metric": metric, "labels": dict(labels or {}),
                                    "unit": unit, "kind": kind, "source": source,
                                    "t": array("d"), "v": array("d")}
        value = float(value)
        if math.isfinite(value):
            s["t"].append(t_ns / 1e9)
            s["v"].append(value)


class Source:
    """A telemetry source: opened once, polled on its own thread, closed once.

    ``poll`` must not raise: a failure is counted and kept as ``last_error``,
    and the run goes on."""

    kind = ""

    def __init__(self, target: str, interval: float) -> None:
        self.target = target
        self.interval = interval
        self.store = Store()
        self.status = "ok"  # ok | unavailable | failed
        self.reason = ""
        self.samples = 0
        self.errors = 0
        self.last_error = ""
        self.gpus: list[dict] = []

    def open(self) -> bool:
        """Prepare; False (with status and reason set) when it cannot be used."""
        return True

    def poll(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def failed(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def describe(self) -> dict:
        status, reason = self.status, self.reason
        if status == "ok" and not self.samples and self.errors:
            status, reason = "failed", self.last_error
        out = {"kind": self.kind, "target": self.target, "status": status,
               "reason": reason, "samples": self.samples, "errors": self.errors}
        if self.last_error and self.samples:
            out["last_error"] = self.last_error
        return out


class Poller:
    """Calls ``poll`` every ``interval`` seconds on a daemon thread, on a
    fixed grid (no drift; missed ticks are skipped, never bunched), and
    once more when stopped so the last sample covers the end of the run."""

    def __init__(self, name: str, interval: float, poll: Callable[[], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.interval = interval
        self._poll = poll
        self._on_error = on_error
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"loadkit-telemetry-{name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._halt.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        due = time.monotonic()
        while True:
            self._safe_poll()
            due += self.interval
            now = time.monotonic()
            if due < now:  # fell behind (a slow scrape): skip to the next tick
                due = now + self.interval - (now - due) % self.interval
            if self._halt.wait(due - now):
                self._safe_poll()
                return

    def _safe_poll(self) -> None:
        try:
            self._poll()
        except Exception as exc:  # noqa: BLE001 - a sampler must never take the run down
            if self._on_error:
                self._on_error(f"{type(exc).__name__}: {exc}")
