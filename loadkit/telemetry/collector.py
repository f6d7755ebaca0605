"""Start every telemetry source of a run, stop them all at its end.

    with telemetry_session(w.telemetry, sim_url) as tele:
        start_ns = ...; drive the engine
    data = tele.result(start_ns)   # plain data for derive.telemetry_section

Start the session before the run's zero: opening sources (an HTTP client,
NVML) costs tens of milliseconds that must not land on the first slots.

Sources: local NVML (``nvml: auto`` by default, also without a
``telemetry:`` block: cheap, and run.json then says why there was no GPU),
the agent, each Prometheus URL, and the embedded simulator's ``/metrics``
when it is the target. Each runs on its own daemon thread, so a slow scrape
never delays a GPU sample, and none of them touches the load generator's
event loop. A source that cannot start or answer is recorded with its reason
and the run goes on; the threads stop when the block ends however it ends
(normally, an error, Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
from array import array
from collections.abc import Iterator, Mapping

from loadkit import envrefs
from loadkit.telemetry.agent_client import AgentSource
from loadkit.telemetry.nvml import NvmlSource
from loadkit.telemetry.prometheus import PrometheusSource
from loadkit.telemetry.store import Poller, Source
from loadkit.urls import authority
from loadkit.workload.telemetry_spec import TelemetrySpec


class Session:
    """The sources of one run and their threads."""

    def __init__(self, spec: TelemetrySpec, sim_url: str | None,
                 env: Mapping[str, str]) -> None:
        self.spec = spec
        self.sources: list[Source] = []
        if spec.nvml is not False:
            self.sources.append(NvmlSource(spec.interval, required=spec.nvml is True))
        if spec.agent:
            self.sources.append(AgentSource(spec.agent, resolve_token(spec, env),
                                            spec.agent_interval))
        targets = list(spec.prometheus)
        # The simulator, when scraped as a source of its own.
        sim = sim_url if spec.scrape_simulator and not any(t.url == sim_url
                                                           for t in targets) else None
        several = len(targets) + bool(sim) > 1  # then each series is named by its source
        for t in targets:
            # Series names reach run.json: the host prefix never carries `user:password@`.
            prefix = f"{t.name}." if t.name else (f"{authority(t.url)}." if several else "")
            self.sources.append(PrometheusSource(
                t.url, t.metrics, prefix, t.interval or max(1.0, spec.interval)))
        if sim:
            self.sources.append(PrometheusSource(sim, None, "sim." if several else "",
                                                 max(1.0, spec.interval)))
        self.pollers: list[Poller] = []

    def start(self) -> None:
        for s in self.sources:
            try:
                ok = s.open()
            except Exception as exc:  # noqa: BLE001 - telemetry never stops a run
                s.status, s.reason, ok = "failed", f"{type(exc).__name__}: {exc}", False
            if ok:
                p = Poller(s.kind, s.interval, s.poll, on_error=s.failed)
                p.start()
                self.pollers.append(p)

    def stop(self) -> None:
        for p in self.pollers:
            p.stop()
        for s in self.sources:
            with contextlib.suppress(Exception):
                s.close()

    def result(self, start_ns: int) -> dict:
        """Plain data for derive.section, times in seconds since ``start_ns``
        (the recorder's zero); call after the block has ended."""
        zero = start_ns / 1e9
        series: dict[str, dict] = {}
        gpus: list[dict] = []
        for s in self.sources:
            for key, one in s.store.series.items():
                series[key] = {**one, "t": array("d", (t - zero for t in one["t"]))}
            gpus += [{**g, "source": s.kind} for g in s.gpus]
        return {"interval_s": self.spec.interval,
                "sources": [s.describe() for s in self.sources],
                "gpus": gpus, "series": series,
                "price_per_gpu_hour": self.spec.price_per_gpu_hour,
                "gpus_declared": self.spec.gpus}


@contextlib.contextmanager
def telemetry_session(spec: TelemetrySpec | None, sim_url: str | None = None,
                      env: Mapping[str, str] | None = None) -> Iterator[Session]:
    """Sample while the block runs. ``sim_url``: the embedded simulator's
    ``/metrics`` (or its base URL), scraped by default when it is the target."""
    if sim_url and not sim_url.endswith("/metrics"):
        sim_url = sim_url.rstrip("/") + "/metrics"
    session = Session(spec or TelemetrySpec(), sim_url,
                      os.environ if env is None else env)
    session.start()
    try:
        yield session
    finally:
        session.stop()


def resolve_token(spec: TelemetrySpec, env: Mapping[str, str]) -> str | None:
    """`${VAR}` in the agent token, from the environment, in memory only."""
    if spec.agent_token is None:
        return None
    return envrefs.resolve(spec.agent_token, env, "telemetry.agent_token")
