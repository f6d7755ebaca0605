"""The telemetry agent's server: NVML samples of a GPU host, served over HTTP.

``loadkit agent`` runs beside the inference server; a workload points at it
with ``telemetry: {agent: URL}``. Endpoints (all behind the token when one
is set; without it, 401):

    GET /v1/samples?since=T   JSON: {"now", "interval_s", "status", "reason",
                              "gpus", "samples": [{"t", "gpu", "values"}]}
                              times on the agent's monotonic clock, seconds
    GET /metrics              the latest sample, Prometheus text (loadkit_gpu_*)
    GET /health               {"status": ...}

It binds to loopback unless a token is set (a GPU host's numbers are not for
everyone, and a sampler is no web server to expose bare). The stdlib's
threading HTTP server is plenty for a few polls a second.

The run's side, which polls it, is ``agent_client.AgentSource``.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loadkit import __version__
from loadkit.auth import authorized
from loadkit.served import QuietHandler, Served
from loadkit.telemetry.nvml import FIELDS, Nvml, NvmlUnavailable
from loadkit.telemetry.store import Poller

__all__ = ["Agent", "AgentServer"]

KEEP_S = 600.0  # samples kept for pollers that fell behind


class Agent:
    """Samples the local GPUs on a thread into a bounded buffer."""

    def __init__(self, interval: float = 0.25, nvml: Nvml | None = None) -> None:
        self.interval = interval
        self.nvml = nvml or Nvml()
        self.status, self.reason = "ok", ""
        self.gpus: list[dict] = []
        self.buffer: collections.deque = collections.deque(
            maxlen=max(1, int(KEEP_S / interval)) * 8)
        self.latest: dict[int, tuple[float, dict]] = {}
        self._lock = threading.Lock()
        self._poller: Poller | None = None

    def start(self) -> None:
        try:
            self.gpus = self.nvml.open()
        except NvmlUnavailable as exc:
            self.status, self.reason = "unavailable", str(exc)
            return
        self._poller = Poller("agent", self.interval, self.sample)
        self._poller.start()

    def stop(self) -> None:
        if self._poller:
            self._poller.stop()
        self.nvml.close()

    def sample(self) -> None:
        # One instant for the tick's GPUs, as the local sampler, added under one
        # lock: a client asking `since` that instant has all of them or none.
        t = time.monotonic()
        read = [(i, self.nvml.read(i)) for i in range(len(self.gpus))]
        with self._lock:
            for i, values in read:
                if values:
                    self.buffer.append({"t": t, "gpu": i, "values": values})
                    self.latest[i] = (t, values)

    def document(self, since: float) -> dict:
        with self._lock:
            samples = [s for s in self.buffer if s["t"] > since]
        return {"agent": "loadkit", "version": __version__, "now": time.monotonic(),
                "interval_s": self.interval, "status": self.status, "reason": self.reason,
                "gpus": self.gpus, "errors": self.nvml.errors,
                "last_error": self.nvml.last_error, "samples": samples}

    def metrics_text(self) -> bytes:
        """The latest sample in the Prometheus text format (prometheus_client)."""
        from prometheus_client import CollectorRegistry, generate_latest
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        agent = self

        class Latest:
            def collect(self) -> Iterator[Any]:
                with agent._lock:
                    latest = dict(agent.latest)
                for field, unit in FIELDS.items():
                    name, doc = _PROM_NAMES[field], f"GPU {field} ({unit}), from NVML."
                    fam = (CounterMetricFamily if field == "energy" else GaugeMetricFamily)(
                        name, doc, labels=["gpu", "name"])
                    for i, (_t, values) in sorted(latest.items()):
                        if field in values:
                            fam.add_metric([str(i), agent.gpus[i]["name"]], values[field])
                    yield fam

        registry = CollectorRegistry(auto_describe=False)
        registry.register(Latest())
        return generate_latest(registry)


_PROM_NAMES = {
    "util": "loadkit_gpu_utilization_percent", "mem_util": "loadkit_gpu_memory_utilization_percent",
    "mem_used": "loadkit_gpu_memory_used_mebibytes", "power": "loadkit_gpu_power_watts",
    "energy": "loadkit_gpu_energy_joules", "temp": "loadkit_gpu_temperature_celsius",
    "sm_clock": "loadkit_gpu_sm_clock_mhz", "mem_clock": "loadkit_gpu_memory_clock_mhz",
    "clock_reasons": "loadkit_gpu_clock_event_reasons",
    "pcie_tx_kbps": "loadkit_gpu_pcie_tx_kilobytes_per_second",
    "pcie_rx_kbps": "loadkit_gpu_pcie_rx_kilobytes_per_second",
}


class AgentServer:
    """The agent's HTTP server on a thread; ``url`` once started."""

    def __init__(self, agent: Agent, host: str = "127.0.0.1", port: int = 9400,
                 token: str | None = None) -> None:
        self.agent = agent
        handler = type("Handler", (_Handler,), {"agent": agent, "token": token})
        self._served = Served(
            handler, host, port, token, name="loadkit-agent",
            refusal=f"refusing to serve GPU telemetry on non-loopback address {host!r} without "
                    "a token: set LOADKIT_AGENT_TOKEN (or --token), and give the same token to "
                    "the workload as telemetry.agent_token")
        self.url = self._served.base

    def start(self) -> AgentServer:
        self.agent.start()
        self._served.start()
        return self

    def close(self) -> None:
        self._served.close()
        self.agent.stop()


class _Handler(QuietHandler):
    agent: Agent
    token: str | None
    server_version = f"loadkit-agent/{__version__}"

    def do_GET(self) -> None:  # the stdlib's name
        if not authorized(self.headers.get("Authorization"), self.token):
            self.send(401, b'{"error": "missing or wrong token"}\n', "application/json",
                       {"WWW-Authenticate": 'Bearer realm="loadkit-agent"'})
            return
        url = urlsplit(self.path)
        if url.path == "/v1/samples":
            try:
                since = float(parse_qs(url.query).get("since", ["-inf"])[0])
            except ValueError:
                self.send(400, b'{"error": "since must be a number"}\n', "application/json")
                return
            body = json.dumps(self.agent.document(since)).encode()
            self.send(200, body, "application/json")
        elif url.path == "/metrics":
            self.send(200, self.agent.metrics_text(), "text/plain; version=0.0.4; charset=utf-8")
        elif url.path == "/health":
            health = json.dumps({"status": self.agent.status, "reason": self.agent.reason})
            self.send(200, health.encode(), "application/json")
        else:
            self.send(404, b'{"error": "not found"}\n', "application/json")

