"""The telemetry agent's client: a run polls a remote ``loadkit agent``.

:class:`AgentSource` polls ``GET /v1/samples?since=T`` (the format is in
``agent_server``), maps the agent's monotonic clock onto the run's (offset
measured at each poll, half the round trip) and stores series
``agent.gpu<i>.<field>``. It needs no pynvml and no HTTP server.
"""

from __future__ import annotations

import json
import time

import httpx

from loadkit.engine.bounded import get_bounded
from loadkit.errors import AnswerTooLarge
from loadkit.telemetry.nvml import FIELDS
from loadkit.telemetry.store import Source
from loadkit.urls import without_credentials

__all__ = ["AgentSource"]


class AgentSource(Source):
    """A remote agent's samples, on the run's time axis."""

    kind = "agent"

    def __init__(self, url: str, token: str | None, interval: float) -> None:
        super().__init__(without_credentials(url), interval)
        self.url = url.rstrip("/") + "/v1/samples"
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client: httpx.Client | None = None
        self.since = float("-inf")
        self.remote_errors = 0

    def describe(self) -> dict:
        out = super().describe()
        out["errors"] += self.remote_errors
        return out

    def open(self) -> bool:
        self.client = httpx.Client(timeout=min(2.0, max(self.interval * 2, 0.5)))
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def poll(self) -> None:
        assert self.client is not None
        sent = time.monotonic_ns()
        try:
            body, _charset = get_bounded(self.client, self.url, params={"since": repr(self.since)},
                                         headers=self.headers, within_s=2.0)
            received = time.monotonic_ns()
            doc = json.loads(body)
            agent_now, samples = float(doc["now"]), doc["samples"]
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 401:
                self.failed(f"the agent at {self.target} refused the token (HTTP 401): "
                            "set telemetry.agent_token to the agent's token")
            else:
                self.failed(f"the agent at {self.target} answered HTTP "
                            f"{exc.response.status_code}")
            return
        except AnswerTooLarge as exc:
            self.failed(f"the agent at {self.target} {exc}: not an agent's samples")
            return
        except httpx.HTTPError as exc:
            self.failed(f"cannot reach the agent at {self.target}: {type(exc).__name__}: {exc}")
            return
        except (ValueError, KeyError, TypeError) as exc:
            self.failed(f"the agent at {self.target} sent an unreadable answer: {exc}")
            return
        self.gpus = doc.get("gpus") or self.gpus
        if doc.get("status") != "ok":
            self.status = "unavailable"
            self.reason = f"agent: {doc.get('reason') or doc.get('status')}"
            return
        self.status, self.reason = "ok", ""
        offset_ns = (sent + received) // 2 - int(agent_now * 1e9)  # agent clock -> ours
        for s in samples:
            try:  # one unreadable sample is dropped, not the agent's whole answer
                i, t = int(s["gpu"]), float(s["t"])
                values = {f: float(v) for f, v in s["values"].items() if f in FIELDS}
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.failed(f"the agent at {self.target} sent an unreadable sample: {exc!r}")
                if isinstance(s, dict) and isinstance(s.get("t"), (int, float)):
                    self.since = max(self.since, float(s["t"]))  # asked for once only
                continue
            for field, value in values.items():
                self.store.add(f"agent.gpu{i}.{field}", value, int(t * 1e9) + offset_ns,
                               metric=f"gpu.{field}", unit=FIELDS[field],
                               labels={"gpu": str(i)}, source="agent")
            self.since = max(self.since, t)
            self.samples += 1
        if doc.get("last_error"):
            self.last_error = f"agent: {doc['last_error']}"
        if isinstance(doc.get("errors"), int):
            self.remote_errors = doc["errors"]  # its NVML's: counted with this side's
