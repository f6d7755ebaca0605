"""Telemetry against real loopback servers: the simulator's /metrics, a
dcgm-exporter sample, the agent (in-process with a fake NVML, and the real
CLI), and whole runs with every source, reachable or not."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadkit.result.model import PhaseInfo
from loadkit.telemetry.agent_client import AgentSource
from loadkit.telemetry.agent_server import Agent, AgentServer
from loadkit.telemetry.derive import Points, gpu_view, section
from loadkit.telemetry.prometheus import PrometheusSource
from support.fake_nvml import FakeNvml
from support.run import RunWorkload, WriteWorkload

ROOT = Path(__file__).resolve().parents[2]

# Samplers on their own clocks are what is asserted (a sample within 50 ms of
# when it was due): not beside other tests under pytest-xdist.
pytestmark = pytest.mark.timing

# A dcgm-exporter scrape (its default counters, two H100s, Kubernetes labels),
# with %(...)s where values move between scrapes.
_LABELS = ('gpu="{i}",UUID="GPU-5fd4e4b9-0c1e-7d3b-55a2-9a1f3c2e{i}d41",pci_bus_id="00000000:'
           '{bus}:00.0",device="nvidia{i}",modelName="NVIDIA H100 80GB HBM3",Hostname='
           '"gpu-node-7",DCGM_FI_DRIVER_VERSION="535.129.03",container="vllm",'
           'namespace="inference",pod="vllm-6d9f7c5b8-x2k4q"')
_DCGM_METRICS = [
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "1980"),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "2619"),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "{temp}"),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "{power}"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter",
     "Total energy consumption since boot (in mJ).", "{energy}"),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "counter", "Total number of PCIe retries.", "0"),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "{util}"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "{memutil}"),
    ("DCGM_FI_DEV_ENC_UTIL", "gauge", "Encoder utilization (in %).", "0"),
    ("DCGM_FI_DEV_XID_ERRORS", "gauge", "Value of the last XID error encountered.", "0"),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "{fbfree}"),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "{fbused}"),
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "gauge",
     "Ratio of time the graphics engine is active.", "{active}"),
    ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "gauge",
     "Ratio of cycles the tensor (HMMA) pipe is active.", "{tensor}"),
]


def dcgm_text(scrape: int) -> str:
    """Scrape n: GPU i uses (70 + 10 i)% at (350 + 100 i) W; energy rises by
    exactly that power × 1 s of mJ per scrape (the test scrapes each second)."""
    lines = []
    for name, kind, doc, value in _DCGM_METRICS:
        lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}"]
        for i, bus in ((0, "18"), (1, "2A")):
            v = value.format(temp=55 + i, power=350.0 + 100 * i,
                             energy=9_000_000_000 + scrape * (350_000 + 100_000 * i),
                             util=70 + 10 * i, memutil=30 + i, fbfree=9000, fbused=72000,
                             active=0.7 + 0.1 * i, tensor=0.4)
            lines.append(f"{name}{{{_LABELS.format(i=i, bus=bus)}}} {v}")
    return "\n".join(lines) + "\n"


@contextmanager
def dcgm_exporter() -> Iterator[str]:
    """A loopback HTTP server answering /metrics like dcgm-exporter."""
    scrapes = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = dcgm_text(scrapes["n"]).encode()
            scrapes["n"] += 1
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/metrics"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def simulator(*args: str) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "loadkit.sim", "--host", "127.0.0.1",
                             "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("LOADKIT_SIM_LISTENING "), proc.stderr.read()
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _scrape(src: PrometheusSource, times: int, gap: float = 0.0) -> None:
    src.open()
    try:
        for _ in range(times):
            src.poll()
            time.sleep(gap)
    finally:
        src.close()


def test_scraping_the_simulators_metrics_over_http() -> None:
    with simulator("--ttft-ms", "20", "--itl-ms", "5") as base:
        src = PrometheusSource(base + "/metrics", None, "", 1.0)
        src.open()
        src.poll()
        with httpx.Client(timeout=10) as client:
            stop = time.monotonic() + 1.0
            while time.monotonic() < stop:  # some load between the scrapes
                r = client.post(base + "/v1/chat/completions", json={
                    "model": "m", "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hello there"}]})
                assert r.status_code == 200
        src.poll()
        src.close()
    s = src.store.series
    assert src.describe()["status"] == "ok" and src.samples == 2
    for key in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                "vllm:gpu_cache_usage_perc", 'loadkit_sim_gpu_utilization_ratio{replica="0"}',
                'loadkit_sim_gpu_power_watts{replica="0"}'):
        assert len(s[key]["v"]) == 2, key
    rate = s["vllm:generation_tokens_total.rate"]["v"][0]
    # Finished requests by reason (a label kept: aborts are not answers).
    success = s['vllm:request_success_total.rate{finished_reason="length"}']["v"][0]
    assert s['vllm:request_success_total{finished_reason="abort"}']["v"][-1] == 0
    assert success > 5 and rate == pytest.approx(8 * success, rel=0.01)  # 8 tokens each
    p50 = s["vllm:time_to_first_token_seconds.p50"]["v"][0]
    assert 0.01 <= p50 <= 0.06  # ~20 ms, within its bucket
    assert s["vllm:e2e_request_latency_seconds.p99"]["unit"] == "s"
    assert s['loadkit_sim_gpu_utilization_ratio{replica="0"}']["v"][1] > 0


def test_scraping_a_dcgm_exporter_sample_over_http() -> None:
    with dcgm_exporter() as url:
        src = PrometheusSource(url, None, "", 1.0)
        _scrape(src, 3, gap=0.05)
    s = src.store.series
    assert src.samples == 3
    util = s['DCGM_FI_DEV_GPU_UTIL{gpu="1"}']
    assert list(util["v"]) == [80.0] * 3 and util["unit"] == "%" and util["labels"] == {"gpu": "1"}
    assert list(s['DCGM_FI_DEV_POWER_USAGE{gpu="0"}']["v"]) == [350.0] * 3
    assert s['DCGM_FI_DEV_POWER_USAGE{gpu="0"}']["unit"] == "W"
    assert s['DCGM_FI_DEV_FB_USED{gpu="0"}']["unit"] == "MiB"
    energy = s['DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total{gpu="1"}']
    assert energy["kind"] == "counter" and energy["v"][2] - energy["v"][0] == 2 * 450_000
    assert 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total.rate{gpu="1"}' in s
    assert 'DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0"}' in s
    assert 'DCGM_FI_DEV_ENC_UTIL{gpu="0"}' not in s  # not selected by default
    # Into the GPU view: dcgm's names, mJ to J, one entry per GPU.
    data: dict[str, Any] = {"sources": [src.describe()], "gpus": [],
            "series": {k: {**v, "t": [1.0, 2.0, 3.0]} for k, v in s.items()}}
    name, hardware, view = gpu_view({k: {**v, "points": _points(v)} for k, v in data["series"].items()})
    assert name == "dcgm" and hardware and len(view["util"]) == 2
    sec = section(data, [PhaseInfo(name="m", start_s=1.0, duration_s=2.0, warmup=False)],
                  [], {"m": 100}, {})
    assert sec.available and sec.gpu_source == "dcgm"
    assert sec.all["energy_j"] == (350 + 450) * 2  # two 1-s scrapes of both GPUs
    assert sec.all["energy_per_request"] == 16.0 and sec.all["gpu.util.mean"] == 75.0


def _points(series: dict[str, Any]) -> Points:
    return Points(zip(series["t"], series["v"]))


# --- the agent --------------------------------------------------------------------

StartAgent = Callable[..., AgentServer]  # the agent_server fixture: (token, host)


@pytest.fixture
def agent_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartAgent]:
    FakeNvml(gpus=2, unsupported={1: {"nvmlDeviceGetPcieThroughput"}}).install(monkeypatch)
    servers = []

    def start(token: str | None = None, host: str = "127.0.0.1") -> AgentServer:
        server = AgentServer(Agent(interval=0.05), host, 0, token).start()
        servers.append(server)
        return server
    yield start
    for s in servers:
        s.close()


def test_agent_on_loopback_serves_samples_as_json_and_prometheus(agent_server: StartAgent) -> None:
    server = agent_server()
    time.sleep(0.3)
    doc = httpx.get(server.url + "/v1/samples").json()
    assert doc["status"] == "ok" and [g["index"] for g in doc["gpus"]] == [0, 1]
    assert doc["gpus"][1]["unsupported"] == ["pcie_tx_kbps", "pcie_rx_kbps"]
    assert len(doc["samples"]) >= 8
    s0 = next(s for s in doc["samples"] if s["gpu"] == 0)
    assert s0["values"]["util"] == 40 and s0["values"]["power"] == 300.0
    later = httpx.get(server.url + "/v1/samples", params={"since": doc["samples"][-1]["t"]}).json()
    assert all(s["t"] > doc["samples"][-1]["t"] for s in later["samples"])
    text = httpx.get(server.url + "/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    util = {s.labels["gpu"]: s.value for s in fams["loadkit_gpu_utilization_percent"].samples}
    assert util == {"0": 40.0, "1": 50.0}
    assert fams["loadkit_gpu_energy_joules"].type == "counter"
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_agent_with_a_token_rejects_requests_without_it(agent_server: StartAgent) -> None:
    server = agent_server(token="t0ken")
    for path in ("/v1/samples", "/metrics", "/health"):
        r = httpx.get(server.url + path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer nope"}
                     ).status_code == 401
    assert httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer t0ken"}
                     ).status_code == 200


def test_agent_source_maps_samples_onto_the_runs_clock(agent_server: StartAgent) -> None:
    server = agent_server(token="t0ken")
    src = AgentSource(server.url, "t0ken", 0.1)
    src.open()
    before = time.monotonic()
    time.sleep(0.3)
    src.poll()
    after = time.monotonic()
    src.poll()
    src.close()
    util = src.store.series["agent.gpu1.util"]
    assert util["metric"] == "gpu.util" and util["source"] == "agent" and set(util["v"]) == {50}
    # Same host, so the mapped times must fall where the samples were taken.
    assert before - 0.35 < util["t"][0] and util["t"][-1] < after + 0.05
    assert src.describe()["status"] == "ok" and src.describe()["samples"] >= 8
    wrong = AgentSource(server.url, "nope", 0.1)
    wrong.open()
    wrong.poll()
    d = wrong.describe()
    assert d["status"] == "failed" and "HTTP 401" in d["reason"]


def _agent_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "loadkit", "agent", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, cwd=ROOT)


def test_agent_cli_refuses_a_public_address_without_a_token() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOADKIT_AGENT_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "loadkit", "agent", "--host", "0.0.0.0",
                           "--port", "0"], capture_output=True, text=True, timeout=30,
                          env=env, cwd=ROOT)
    assert done.returncode == 2
    assert "refusing to serve GPU telemetry on non-loopback address '0.0.0.0' without a token" \
        in done.stderr and "LOADKIT_AGENT_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("host, token", [("127.0.0.1", None), ("0.0.0.0", "s3cret")])
def test_agent_cli_serves_and_checks_the_token(host: str, token: str | None) -> None:
    proc = _agent_cli("--host", host, "--port", "0", "--interval", "100ms",
                      env={"LOADKIT_AGENT_TOKEN": token} if token else {})
    assert proc.stdout is not None and proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("LOADKIT_AGENT_LISTENING "), proc.stderr.read()
        url = line.split()[1].replace("0.0.0.0", "127.0.0.1")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        doc = httpx.get(url + "/v1/samples", headers=headers).json()
        # No GPU on this machine: the agent says so instead of failing.
        assert doc["status"] in ("ok", "unavailable") and "now" in doc
        if token:
            assert httpx.get(url + "/v1/samples").status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


# --- whole runs ----------------------------------------------------------------------

def _workload(telemetry: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    w = {"name": "tele", "seed": 1, "duration": "2s", "interval": "500ms",
         "arrival": {"process": "constant", "rate": 20},
         "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 8,
                        "prompt_tokens": 16}], **extra}
    if telemetry is not None:
        w["telemetry"] = telemetry
    return w


@pytest.mark.slow
def test_a_run_without_a_gpu_says_why_and_shows_the_simulated_one(run: RunWorkload) -> None:
    doc, out = run(_workload(None), html=True)  # charts with simulated GPU telemetry
    assert "gpu" in (out / "report.html").read_text().lower()
    tele = doc["telemetry"]
    json.dumps(tele, allow_nan=False)
    nvml = next(s for s in tele["sources"] if s["kind"] == "nvml")
    if nvml["status"] == "ok":  # pragma: no cover - a machine with a GPU
        pytest.skip("this machine has an NVIDIA GPU")
    assert tele["available"] is False and nvml["status"] == "unavailable"
    assert "NVML" in tele["reason"] or "nvidia-ml-py" in tele["reason"]
    sim = next(s for s in tele["sources"] if s["kind"] == "prometheus")
    assert sim["status"] == "ok" and sim["samples"] >= 2
    assert tele["simulated"] and tele["gpu_source"] == "simulator"
    assert "vllm:num_requests_running" in tele["series"]
    # The requests the measured time's energy was spent on: those that ended in it.
    measured_s = sum(p["duration_s"] for p in doc["phases"] if not p["warmup"])
    served = round(doc["throughput"]["requests_per_s"] * measured_s)
    assert tele["all"]["gpu.util.mean"] > 0 and tele["all"]["requests"] == served
    assert len(tele["per_interval"]) == len(doc["timeseries"])
    assert tele["per_interval"][0]["start_s"] == doc["timeseries"][0]["start_s"]


@pytest.mark.slow
def test_a_run_with_agent_dcgm_and_a_price(run: RunWorkload, agent_server: StartAgent,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    server = agent_server(token="t0ken")
    monkeypatch.setenv("TELE_TOKEN", "t0ken")
    with dcgm_exporter() as dcgm:
        doc, out = run(_workload({
            "nvml": False, "agent": server.url, "agent_token": "${TELE_TOKEN}",
            "agent_interval": "200ms", "price_per_gpu_hour": 4.0,
            "prometheus": [{"url": dcgm, "name": "dcgm", "interval": "250ms"}]},
            slos=["energy_per_request <= 1000 J", "idle_silicon <= 70%",
                  "gpu.util mean >= 40%", "gpu.util max < 99%", "gpu.power mean < 0.3 kW",
                  "prom.dcgm.DCGM_FI_DEV_GPU_UTIL max >= 75"]), html=True)
    assert "t0ken" not in (out / "report.html").read_text()
    tele = doc["telemetry"]
    text = (out / "run.json").read_text()
    assert "t0ken" not in text and "${TELE_TOKEN}" in text  # the reference, never the value
    kinds = {s["kind"]: s for s in tele["sources"]}
    assert kinds["agent"]["status"] == "ok" and kinds["agent"]["samples"] > 10
    scraped = {s["target"]: s for s in tele["sources"] if s["kind"] == "prometheus"}
    assert scraped[dcgm]["status"] == "ok" and len(scraped) == 2  # dcgm and the simulator
    assert "sim.vllm:num_requests_running" in tele["series"]  # prefixed: two targets
    assert tele["available"] and tele["gpu_source"] == "hardware"  # the agent wins over dcgm
    assert 'dcgm.DCGM_FI_DEV_GPU_UTIL{gpu="0"}' in tele["series"]
    assert tele["series"]["agent.gpu0.power"]["unit"] == "W"
    a = tele["all"]
    assert a["gpu.util.mean"] == 45.0 and a["gpu.power.mean"] == 300.5
    # Energy from the fake's counters (300 and 301 W) over the measured ~2 s.
    assert a["energy_j"] == pytest.approx(601 * a["duration_s"], rel=0.1)
    assert a["energy_per_request"] == pytest.approx(a["energy_j"] / a["requests"], abs=1e-3)
    cost = 4.0 * 2 * a["duration_s"] / 3600
    assert a["cost_per_1k_requests"] == pytest.approx(cost / a["requests"] * 1000, abs=1e-6)
    assert a["prom.dcgm.DCGM_FI_DEV_GPU_UTIL.mean"] == 75.0
    verdicts = [(s["text"], s["verdict"]) for s in doc["slos"]]
    assert [v for _, v in verdicts] == ["pass"] * 4 + ["fail", "pass"], verdicts  # 300.5 W
    util = doc["slos"][2]
    assert util["observed"] == pytest.approx(0.45) and util["unit"] == "%"


@pytest.mark.slow
def test_unreachable_sources_fail_without_failing_the_run(run: RunWorkload) -> None:
    doc, _out = run(_workload({"nvml": True, "agent": "http://127.0.0.1:9",
                               "prometheus": [{"url": "http://127.0.0.1:9/metrics"}]}))
    tele = doc["telemetry"]
    by_kind = {s["kind"]: s for s in tele["sources"]}
    assert by_kind["agent"]["status"] == "failed"
    assert "cannot reach the agent at http://127.0.0.1:9" in by_kind["agent"]["reason"]
    failed = [s for s in tele["sources"] if s["target"] == "http://127.0.0.1:9/metrics"]
    assert failed[0]["status"] == "failed" and "cannot scrape" in failed[0]["reason"]
    if by_kind["nvml"]["status"] != "ok":
        assert by_kind["nvml"]["status"] == "failed"  # asked for with `nvml: true`
    assert doc["counts"]["completed"] > 0


def test_a_bad_telemetry_block_exits_2_with_file_and_line(workload_file: WriteWorkload) -> None:
    path = workload_file("name: t\nduration: 1s\narrival: {rate: 1}\n"
                         "scenarios: [{name: c, kind: openai-chat}]\n"
                         "telemetry:\n  agent: gpu-host:9400\n")
    done = subprocess.run([sys.executable, "-m", "loadkit", "run", str(path), "-q"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2
    assert f"{path}:6: telemetry.agent: " in done.stderr and "http://" in done.stderr
