"""Telemetry: NVML sampling against a fake pynvml, Prometheus parsing, the
derived figures on scripted samples, the spec, and the sampler's overhead.

The fake replaces pynvml's functions (monkeypatch), so the real sampler code
runs unchanged: units, unsupported fields, errors in the middle of a run.
"""

from __future__ import annotations

import json
import threading
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pynvml
import pytest

from loadkit.errors import InputError, WorkloadError
from loadkit.result.model import PhaseInfo
from loadkit.telemetry.collector import Session, resolve_token, telemetry_session
from loadkit.telemetry.derive import gpu_view, section, slo_values
from loadkit.telemetry.nvml import Nvml, NvmlSource
from loadkit.telemetry.prometheus import PrometheusSource, parse, quantile, selector
from loadkit.workload.loader import Overrides, load_workload
from loadkit.workload.telemetry_spec import TelemetrySpec
from support.fake_nvml import FakeNvml
from support.run import WriteWorkload

MakeFake = Callable[..., FakeNvml]  # the fake_nvml fixture: FakeNvml's arguments


@pytest.fixture
def fake_nvml(monkeypatch: pytest.MonkeyPatch) -> MakeFake:
    def make(**kwargs: Any) -> FakeNvml:
        return FakeNvml(**kwargs).install(monkeypatch)
    return make


# --- NVML ---------------------------------------------------------------------------

def test_nvml_reads_every_field_in_its_unit(fake_nvml: MakeFake) -> None:
    fake_nvml(gpus=2)
    nv = Nvml()
    gpus = nv.open()
    assert [g["name"] for g in gpus] == ["NVIDIA H100 80GB HBM3"] * 2
    assert gpus[1]["uuid"] == "GPU-00000001" and gpus[0]["memory_total_mib"] == 81920.0
    v = nv.read(1)
    assert v == {"util": 50, "mem_util": 21, "mem_used": 2048.0, "power": 301.0,
                 "energy": pytest.approx(1e6, rel=1e-3), "temp": 61, "sm_clock": 1980,
                 "mem_clock": 2619, "clock_reasons": 4, "pcie_tx_kbps": 1000,
                 "pcie_rx_kbps": 2000}
    assert nv.errors == 0 and gpus[1]["unsupported"] == []
    nv.close()


def test_a_tick_s_gpus_share_its_instant(fake_nvml: MakeFake) -> None:
    """The local sampler and the agent stamp every GPU of a tick with one
    instant, so a window holds all of a tick's GPUs or none: stamped as each
    was read, a window's edge once fell between two, and the mean over GPUs
    of 40% and 50% came out 44.94 (41 samples of one, 40 of the other)."""
    from loadkit.telemetry.agent_server import Agent

    fake_nvml(gpus=3)
    local = NvmlSource(interval=1.0)
    assert local.open()
    agent = Agent(interval=1.0)
    agent.gpus = agent.nvml.open()
    for _ in range(3):
        local.poll()
        agent.sample()
    times = [list(local.store.series[f"gpu{i}.util"]["t"]) for i in range(3)]
    assert len(set(times[0])) == 3 and times[0] == times[1] == times[2]
    ticks: dict[float, list[int]] = {}
    for s in agent.document(since=0.0)["samples"]:
        ticks.setdefault(s["t"], []).append(s["gpu"])
    assert list(ticks.values()) == [[0, 1, 2]] * 3
    local.close()
    agent.nvml.close()


def test_unsupported_fields_are_recorded_once_and_not_errors(fake_nvml: MakeFake) -> None:
    fake = fake_nvml(gpus=2, unsupported={1: {"nvmlDeviceGetPcieThroughput",
                                              "nvmlDeviceGetTotalEnergyConsumption",
                                              "nvmlDeviceGetUtilizationRates"}})
    nv = Nvml()
    nv.open()
    for _ in range(3):
        v0, v1 = nv.read(0), nv.read(1)
    assert "pcie_tx_kbps" in v0 and "energy" in v0
    assert set(v1) == {"mem_used", "power", "temp", "sm_clock", "mem_clock", "clock_reasons"}
    assert sorted(nv.gpus[1]["unsupported"]) == ["energy", "mem_util", "pcie_rx_kbps",
                                                 "pcie_tx_kbps", "util"]
    assert nv.errors == 0
    # Asked once, then never again (TX and RX: one call each).
    assert fake.calls[("nvmlDeviceGetTotalEnergyConsumption", 1)] == 1
    assert fake.calls[("nvmlDeviceGetPcieThroughput", 1)] == 2
    assert fake.calls[("nvmlDeviceGetPowerUsage", 1)] == 3


def test_errors_in_the_middle_of_a_run_are_counted_and_sampling_goes_on(
        fake_nvml: MakeFake) -> None:
    fake_nvml(gpus=1, fail={("nvmlDeviceGetPowerUsage", 0): {3, 4}})
    src = NvmlSource(interval=0.01)
    assert src.open()
    for _ in range(6):
        src.poll()
    power = src.store.series["gpu0.power"]
    util = src.store.series["gpu0.util"]
    assert len(util["v"]) == 6 and len(power["v"]) == 4  # two power readings lost
    d = src.describe()
    assert d["status"] == "ok" and d["errors"] == 2 and d["samples"] == 6
    assert "gpu0 power" in d["last_error"] and "GPU is lost" in d["last_error"]
    assert src.gpus[0]["unsupported"] == []
    src.close()


@pytest.mark.parametrize("error, required, status, words", [
    (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, False, "unavailable", "NVML library not found"),
    (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, False, "unavailable", "no NVIDIA GPU"),
    (pynvml.NVML_ERROR_NO_PERMISSION, True, "failed", "no permission"),
])
def test_no_gpu_is_a_recorded_reason_not_an_error(fake_nvml: MakeFake, error: int, required: bool,
                                                  status: str, words: str) -> None:
    fake_nvml(init_error=error)
    src = NvmlSource(interval=0.25, required=required)
    assert not src.open()
    d = src.describe()
    assert d["status"] == status and words in d["reason"]


def test_zero_devices(fake_nvml: MakeFake) -> None:
    fake = fake_nvml(gpus=0)
    src = NvmlSource(interval=0.25)
    assert not src.open()
    assert src.describe()["reason"] == "no NVIDIA GPU: NVML found 0 devices"
    assert fake.shutdowns == 1


def _telemetry_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("loadkit-telemetry")]


@pytest.mark.timing  # a thread's ticks against the time that passed
def test_session_samples_on_a_thread_and_stops_it(fake_nvml: MakeFake) -> None:
    fake = fake_nvml(gpus=2)
    spec = TelemetrySpec(interval="20ms")
    with telemetry_session(spec) as tele:
        start_ns = time.monotonic_ns()
        assert len(_telemetry_threads()) == 1
        time.sleep(0.4)
        elapsed = (time.monotonic_ns() - start_ns) / 1e9  # a starved host sleeps longer
    assert _telemetry_threads() == []
    assert fake.shutdowns == 1
    data = tele.result(start_ns)
    nvml = data["sources"][0]
    assert nvml["kind"] == "nvml" and nvml["status"] == "ok"
    n = len(data["series"]["gpu0.util"]["v"])
    # One tick each 20 ms that passed, the first at the start and a final one at
    # the stop; never bunched (a tick that falls behind is skipped, not repeated).
    ticks = elapsed / 0.02 + 2
    assert 0.7 * ticks <= n <= ticks + 1, (n, elapsed)
    t = data["series"]["gpu1.power"]["t"]
    assert -0.01 < t[0] < 0.1 and all(b > a for a, b in zip(t, t[1:]))
    assert data["gpus"][0]["source"] == "nvml"


def test_session_stops_threads_on_errors_and_ctrl_c(fake_nvml: MakeFake) -> None:
    fake_nvml(gpus=1)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), telemetry_session(TelemetrySpec(interval="10ms")):
            time.sleep(0.05)
            raise exc
        assert _telemetry_threads() == []


@pytest.mark.slow
def test_sampler_overhead_at_the_default_interval(fake_nvml: MakeFake) -> None:
    """Process CPU time / wall time while the main thread sleeps: under 1% of
    a core at 250 ms (8 fake GPUs, every field)."""
    fake_nvml(gpus=8)
    wall = 3.0
    with telemetry_session(TelemetrySpec()) as tele:
        time.sleep(0.3)  # past the first sample (startup is not steady state)
        cpu0, t0 = time.process_time(), time.monotonic()
        time.sleep(wall)
        cpu, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    share = cpu / elapsed
    print(f"\nsampler CPU at 250 ms, 8 fake GPUs: {share * 100:.3f}% of a core "
          f"({cpu * 1000:.1f} ms CPU in {elapsed:.2f} s)")
    assert tele.sources[0].samples >= 8 * 12
    assert share < 0.01


# --- Prometheus parsing -------------------------------------------------------------

def test_counters_become_rates_and_resets_restart_from_zero() -> None:
    src = PrometheusSource("http://127.0.0.1:1/metrics", None, "", 1.0)
    text = ('# TYPE vllm:generation_tokens_total counter\n'
            'vllm:generation_tokens_total{model_name="a"} %d\n'
            'vllm:generation_tokens_total{model_name="b"} %d\n')
    wanted = selector(None)
    for t_s, a, b in ((10, 100, 0), (11, 150, 10), (13, 30, 20)):  # reset before t=13
        src.ingest(parse(text % (a, b), wanted), t_s * 10**9)
    raw = src.store.series["vllm:generation_tokens_total"]
    rate = src.store.series["vllm:generation_tokens_total.rate"]
    assert list(raw["v"]) == [100, 160, 50]  # models summed
    assert list(rate["v"]) == [60.0, 25.0]  # (160-100)/1; after the reset 50/2
    assert rate["unit"] == "/s" and rate["kind"] == "rate"


def test_a_nan_or_inf_counter_reading_is_skipped_not_a_reset() -> None:
    """A counter at a true 100/s read NaN twice and +Inf once: the rate stays
    100/s (a NaN stored as the last reading made the next one a "reset":
    rates of 1,035 and 1,336/s, an audit)."""
    src = PrometheusSource("http://127.0.0.1:1/metrics", None, "", 1.0)
    text = "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total %s\n"
    for t_s in range(1, 12):
        value = "NaN" if t_s in (5, 6) else "+Inf" if t_s == 9 else str(1000 + 100 * t_s)
        src.ingest(parse(text % value, selector(None)), t_s * 10**9)
    rate = src.store.series["vllm:generation_tokens_total.rate"]
    assert list(rate["v"]) == [100.0] * len(rate["v"]) and len(rate["v"]) == 7


def test_one_target_is_unprefixed_when_the_simulator_is_not_scraped() -> None:
    """The embedded simulator not scraped is no second source: the one
    target's series keep their names, for `prom.` SLOs (they were named by
    host, and every such SLO inconclusive: an audit)."""
    spec = TelemetrySpec.model_validate({"nvml": False, "scrape_simulator": False,
                                         "prometheus": [{"url": "http://127.0.0.1:1/metrics"}]})
    sources = Session(spec, "http://127.0.0.1:2", {}).sources
    assert [(s.kind, getattr(s, "prefix", None)) for s in sources] == [("prometheus", "")]
    scraped = Session(spec.model_copy(update={"scrape_simulator": True}), "http://127.0.0.1:2",
                      {}).sources
    assert sorted(getattr(s, "prefix", "") for s in scraped) == ["127.0.0.1:1.", "sim."]


def test_openmetrics_text_keeps_its_counters() -> None:
    """A server that answers OpenMetrics (`# EOF`, `_created` samples) whatever
    it was asked: its counters are read (they were lost, and `_created`
    read as a gauge: an audit)."""
    text = ('# TYPE vllm:prompt_tokens counter\n'
            'vllm:prompt_tokens_total{model_name="m"} 1234.0\n'
            'vllm:prompt_tokens_created{model_name="m"} 1.7e9\n'
            '# TYPE vllm:num_requests_waiting gauge\n'
            'vllm:num_requests_waiting{model_name="m"} 3.0\n# EOF\n')
    parsed = parse(text, selector(["vllm:*"]))
    assert [(k, v[2]) for k, v in parsed.counters.items()] == [("vllm:prompt_tokens_total", 1234.0)]
    assert list(parsed.gauges) == ["vllm:num_requests_waiting"]
    # A page the strict OpenMetrics parser refuses is read as Prometheus text.
    clash = "# TYPE vllm:num_requests_waiting_total counter\nvllm:num_requests_waiting_total 3\n"
    assert parse(clash + "# EOF\n", selector(["vllm:*"])).counters


def test_histograms_become_interval_percentiles() -> None:
    src = PrometheusSource("http://127.0.0.1:1/metrics", ["vllm:time_to_first_token_seconds"],
                           "", 1.0)
    def text(b1: int, b2: int, inf: int, total: float) -> str:
        return ('# TYPE vllm:time_to_first_token_seconds histogram\n'
                f'vllm:time_to_first_token_seconds_bucket{{le="0.1"}} {b1}\n'
                f'vllm:time_to_first_token_seconds_bucket{{le="0.5"}} {b2}\n'
                f'vllm:time_to_first_token_seconds_bucket{{le="+Inf"}} {inf}\n'
                f'vllm:time_to_first_token_seconds_sum {total}\n'
                f'vllm:time_to_first_token_seconds_count {inf}\n')
    src.ingest(parse(text(5, 5, 5, 0.25), src.wanted), 1 * 10**9)
    # Between the scrapes: 10 in (0, 0.1], 10 in (0.1, 0.5], total 4.0 s.
    src.ingest(parse(text(15, 25, 25, 4.25), src.wanted), 2 * 10**9)
    s = src.store.series
    assert list(s["vllm:time_to_first_token_seconds.p50"]["v"]) == [pytest.approx(0.1)]
    assert list(s["vllm:time_to_first_token_seconds.p90"]["v"]) == [pytest.approx(0.1 + 0.4 * 0.8)]
    assert list(s["vllm:time_to_first_token_seconds.mean"]["v"]) == [pytest.approx(0.2)]
    assert s["vllm:time_to_first_token_seconds.p99"]["unit"] == "s"
    assert quantile([(1.0, 0), (float("inf"), 4)], 0.5) == 1.0  # PromQL's answer


def test_selection_by_name_and_glob() -> None:
    wanted = selector(["DCGM_FI_DEV_*", "vllm:prompt_tokens_total"])
    assert wanted("DCGM_FI_DEV_GPU_UTIL", "gauge") and wanted("vllm:prompt_tokens", "counter")
    assert not wanted("vllm:num_requests_waiting", "gauge")
    assert selector(None)("vllm:num_requests_waiting", "gauge")


# --- derived figures on a scripted fake ---------------------------------------------

def _series(metric: str, gpu: int, points: list[tuple[float, float]], unit: str,
            source: str = "nvml") -> dict[str, Any]:
    return {"metric": metric, "labels": {"gpu": str(gpu)}, "unit": unit, "kind": "gauge",
            "source": source, "t": array("d", [p[0] for p in points]),
            "v": array("d", [p[1] for p in points])}


def _scripted(price: float = 2.0, gpus_declared: int | None = None
              ) -> tuple[dict[str, Any], list[PhaseInfo], list[dict[str, Any]]]:
    """Two GPUs sampled every 0.5 s over 0..20 s. GPU0 draws 200 W, GPU1 300 W;
    their energy counters rise exactly that much (J/s) from 1000 and 5000 J.
    Utilisation: 40% / 80% in warm-up (0..5 s), 60% / 100% after."""
    ts = [i * 0.5 for i in range(41)]
    series = {}
    for gpu, watts, e0, lo, hi in ((0, 200.0, 1000.0, 40.0, 60.0), (1, 300.0, 5000.0, 80.0, 100.0)):
        series[f"gpu{gpu}.util"] = _series("gpu.util", gpu, [(t, lo if t < 5 else hi) for t in ts], "%")
        series[f"gpu{gpu}.power"] = _series("gpu.power", gpu, [(t, watts) for t in ts], "W")
        series[f"gpu{gpu}.energy"] = _series("gpu.energy", gpu, [(t, e0 + watts * t) for t in ts], "J")
        series[f"gpu{gpu}.temp"] = _series("gpu.temp", gpu, [(t, 70.0 + gpu) for t in ts], "C")
    series["vllm:num_requests_waiting"] = {
        "metric": "vllm:num_requests_waiting", "labels": {}, "unit": "", "kind": "gauge",
        "source": "prometheus", "t": array("d", [1.0, 6.0, 11.0]), "v": array("d", [2, 4, 8])}
    data = {"interval_s": 0.5, "sources": [{"kind": "nvml", "target": "local", "status": "ok",
                                             "reason": "", "samples": 82, "errors": 0}],
            "gpus": [{"index": 0}, {"index": 1}], "series": series,
            "price_per_gpu_hour": price, "gpus_declared": gpus_declared}
    phases = [PhaseInfo(name="warmup", start_s=0.0, duration_s=5.0, warmup=True),
              PhaseInfo(name="steady", start_s=5.0, duration_s=10.0, warmup=False),
              PhaseInfo(name="spike", start_s=15.0, duration_s=4.0, warmup=False)]
    intervals = [{"start_s": float(i), "end_s": float(i + 1), "completed": 10, "errors": 0,
                  "output_tokens": 500, "latency_p50_ms": 100.0, "latency_p99_ms": 300.0}
                 for i in range(19)]
    return data, phases, intervals


def test_energy_per_request_is_the_counter_delta_over_completed_requests() -> None:
    data, phases, intervals = _scripted()
    sec = section(data, phases, intervals, {"warmup": 40, "steady": 250, "spike": 80},
                  {"warmup": 2000, "steady": 10_000, "spike": 4000})
    steady = sec.phases["steady"]
    # (200 + 300) J/s × 10 s = 5000 J over 250 requests and 10,000 tokens.
    assert steady["energy_j"] == 5000.0 and steady["energy_source"] == "counter"
    assert steady["energy_per_request"] == 5000.0 / 250
    assert steady["energy_per_1k_output_tokens"] == 5000.0 / 10_000 * 1000
    assert sec.phases["spike"]["energy_per_request"] == 500 * 4 / 80
    a = sec.all  # steady + spike: 7000 J over 330 requests
    assert a["energy_j"] == 7000.0 and a["energy_per_request"] == round(7000 / 330, 3)
    assert a["gpu.util.mean"] == 80.0 and a["gpu.util.max"] == 100.0
    assert a["idle_silicon"] == 20.0 and a["gpu.power.max"] == 300.0
    assert sec.phases["warmup"]["gpu.util.mean"] == 60.0
    assert a["gpu.temp.max"] == 71.0
    assert a["prom.vllm:num_requests_waiting.mean"] == 6.0  # points at 6 and 11 s
    assert sec.available and sec.gpu_source == "hardware" and not sec.simulated


def test_energy_is_left_out_where_a_gpu_s_readings_stop_short() -> None:
    """GPU1's sampler lost at 12 s of 20: held flat after, its energy read
    low, unsaid (5,685 J against 7,212 in an audit). Its energy, and so the
    total, is left out where its readings stop short; GPU0's phases stand."""
    data, phases, intervals = _scripted()
    for field in ("power", "energy"):
        s = data["series"][f"gpu1.{field}"]
        keep = [i for i, t in enumerate(s["t"]) if t <= 12.0]
        s["t"], s["v"] = array("d", [s["t"][i] for i in keep]), array("d", [s["v"][i] for i in keep])
    sec = section(data, phases, intervals, {"warmup": 40, "steady": 250, "spike": 80},
                  {"warmup": 2000, "steady": 10_000, "spike": 4000})
    assert "energy_j" not in sec.all and "energy_j" not in sec.phases["spike"]
    assert "energy_j" not in sec.phases["steady"]  # 5-15 s: its readings end at 12 s
    assert sec.phases["warmup"]["energy_j"] == 2500.0  # 0-5 s, both covered


def test_cost_figures_match_a_hand_calculation() -> None:
    data, phases, intervals = _scripted(price=2.0)
    sec = section(data, phases, intervals, {"steady": 250, "spike": 80},
                  {"steady": 10_000, "spike": 4000})
    # 2 GPUs × 10 s × $2/h = $0.011111; per 1k requests: /250×1000; per 1M tokens: /1e4×1e6
    steady = sec.phases["steady"]
    cost = 2 * 10 / 3600 * 2.0
    assert steady["cost"] == round(cost, 6)
    assert steady["cost_per_1k_requests"] == round(cost / 250 * 1000, 6)  # 0.044444
    assert steady["cost_per_1m_output_tokens"] == round(cost / 10_000 * 1e6, 6)  # 1.111111
    a = sec.all  # 14 measured seconds, 330 requests, 14,000 tokens
    assert a["cost_per_1k_requests"] == round(2 * 14 / 3600 * 2.0 / 330 * 1000, 6)
    declared = section(*_scripted(price=3.0, gpus_declared=8), {"steady": 250}, {})
    assert declared.phases["steady"]["cost_per_1k_requests"] == round(
        8 * 10 / 3600 * 3.0 / 250 * 1000, 6)
    assert "cost_per_1m_output_tokens" not in declared.phases["steady"]  # no tokens


def test_energy_falls_back_to_integrated_power_without_a_counter() -> None:
    data, phases, intervals = _scripted()
    for gpu in (0, 1):
        del data["series"][f"gpu{gpu}.energy"]
    sec = section(data, phases, intervals, {"steady": 100}, {})
    assert sec.phases["steady"]["energy_j"] == pytest.approx(5000.0)
    assert sec.phases["steady"]["energy_source"] == "power"


def test_per_interval_rows_join_latency_and_gpu() -> None:
    data, phases, intervals = _scripted()
    sec = section(data, phases, intervals, {}, {})
    row = sec.per_interval[6]  # 6..7 s
    assert row["start_s"] == 6.0 and row["latency_p99_ms"] == 300.0 and row["completed"] == 10
    assert row["gpu.util"] == 80.0 and row["gpu.power"] == 250.0
    assert row["gpu.energy_j"] == pytest.approx(500.0)
    assert row["prom.vllm:num_requests_waiting"] == 4.0


def test_slo_values_keys_and_json() -> None:
    data, phases, intervals = _scripted()
    sec = section(data, phases, intervals, {"steady": 250, "spike": 80},
                  {"steady": 10_000, "spike": 4000})
    json.dumps(sec.model_dump(mode="json"), allow_nan=False)
    v = slo_values(sec, "all")
    assert set(v) == {"gpu.util.mean", "gpu.util.max", "gpu.power.mean", "gpu.power.max", "gpu.temp.mean",
                      "gpu.temp.max", "idle_silicon", "energy_per_request",
                      "energy_per_1k_output_tokens", "cost_per_1k_requests",
                      "cost_per_1m_output_tokens", "prom.vllm:num_requests_waiting.mean",
                      "prom.vllm:num_requests_waiting.max"}  # no mem_util: not sampled
    assert all(isinstance(x, float) for x in v.values())
    assert slo_values(sec, "phase:spike")["energy_per_request"] == 25.0
    assert slo_values(sec, "phase:nope") == {} and slo_values(sec, "tenant:a") == {}


def test_no_telemetry_at_all_is_a_reasoned_empty_section() -> None:
    sec = section({"interval_s": 0.25, "gpus": [], "series": {}, "sources": [
        {"kind": "nvml", "target": "local", "status": "unavailable",
         "reason": "NVML library not found: x", "samples": 0, "errors": 0}]},
        [PhaseInfo(name="m", start_s=0.0, duration_s=1.0, warmup=False)], [], {"m": 3}, {})
    assert sec.available is False and "NVML library not found" in sec.reason
    assert slo_values(sec, "all") == {}
    json.dumps(sec.model_dump(mode="json"), allow_nan=False)


def test_simulator_gauges_are_a_gpu_view_but_not_hardware() -> None:
    series = {'loadkit_sim_gpu_utilization_ratio{replica="0"}': {
        "metric": "loadkit_sim_gpu_utilization_ratio", "labels": {"replica": "0"}, "unit": "ratio",
        "kind": "gauge", "source": "prometheus", "points": [[0.5, 0.25], [1.5, 0.75]]}}
    sec = section({"sources": [], "series": series, "gpus": []},
                  [PhaseInfo(name="m", start_s=0.0, duration_s=2.0, warmup=False)], [], {}, {})
    assert sec.gpu_source == "simulator" and sec.simulated and not sec.available
    assert sec.all["gpu.util.mean"] == 50.0
    name, hardware, view = gpu_view({})
    assert (name, hardware, view) == (None, False, {})


# --- spec -----------------------------------------------------------------------------

def test_bad_telemetry_config_is_a_workload_error_with_its_line(
        workload_file: WriteWorkload) -> None:
    path = workload_file("name: t\nduration: 1s\narrival: {rate: 1}\n"
                         "scenarios: [{name: c, kind: openai-chat}]\n"
                         "telemetry:\n  interval: banana\n  prometheus:\n    - {url: ftp://x}\n")
    with pytest.raises(WorkloadError) as err:
        load_workload(path)
    text = str(err.value)
    assert f"{path}:6: telemetry.interval" in text
    assert f"{path}:8: telemetry.prometheus[0].url" in text


def test_agent_token_is_resolved_in_memory_and_never_described() -> None:
    spec = TelemetrySpec(agent="http://127.0.0.1:9400", agent_token="${TOK}")
    assert resolve_token(spec, {"TOK": "s3cret"}) == "s3cret"
    with pytest.raises(InputError, match=r"\$\{TOK\} is not set"):
        resolve_token(spec, {})
    assert "s3cret" not in json.dumps(spec.model_dump(mode="json"))


def test_outputs_never_hold_a_literal_token_or_url_credentials() -> None:
    spec = TelemetrySpec(agent="http://user:pw@gpu-host:9400", agent_token="literal-secret",
                         prometheus=[{"url": "https://u:p@gpu-host/metrics"}])
    dumped = json.dumps(spec.model_dump(mode="json"))
    assert "literal-secret" not in dumped and "pw@" not in dumped and "u:p@" not in dumped
    assert spec.agent_token == "literal-secret"  # in memory, for the requests
    # Sources' targets and series prefixes reach run.json too (no source is opened here).
    spec = TelemetrySpec(nvml=False, agent="http://user:pw@gpu-host:9400", prometheus=[
        {"url": "http://u:p@h1:9100/metrics?key=k3y"}, {"url": "http://h2/metrics"}])
    session = Session(spec, None, {})
    shown = json.dumps([s.describe() for s in session.sources])
    assert "pw" not in shown and "u:p" not in shown and "k3y" not in shown
    assert len(session.sources) == 3
    prefixes = [s.prefix for s in session.sources[1:] if isinstance(s, PrometheusSource)]
    assert prefixes == ["h1:9100.", "h2."]


def test_rescaling_keeps_what_the_telemetry_requests_send(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("duration: 10s\narrival: {process: constant, rate: 1}\n"
                    "scenarios: [{name: c, kind: openai-chat}]\n"
                    "telemetry:\n  agent: http://u:pw@gpu:9400\n  agent_token: literal-tok\n"
                    "  prometheus: [{url: 'http://u:p@h/metrics?key=k3y'}]\n")
    spec = load_workload(path, Overrides(duration=5)).workload.telemetry
    assert spec is not None
    assert (spec.agent, spec.agent_token, spec.prometheus[0].url) == (
        "http://u:pw@gpu:9400", "literal-tok", "http://u:p@h/metrics?key=k3y")


def test_one_unreadable_agent_sample_is_dropped_and_sampling_goes_on() -> None:
    """A sample with `values: null` among good ones: dropped and counted, the
    others kept, and not asked for again (it stopped the agent's telemetry
    for the rest of the run: every poll fetched it again and failed, an
    audit). The agent's own NVML errors count with the source's."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from loadkit.telemetry.agent_client import AgentSource

    asked: list[str] = []
    samples: list[dict[str, Any]] = [{"gpu": 0, "t": 1.0, "values": {"util": 50}},
                                     {"gpu": 0, "t": 2.0, "values": None},
                                     {"gpu": 0, "t": 3.0, "values": {"util": 70}}]

    class Agent(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            since = float(self.path.split("since=")[1])
            body = json.dumps({"now": 4.0, "status": "ok", "gpus": [{"index": 0}], "errors": 4,
                               "last_error": "GPU is lost",
                               "samples": [s for s in samples if s["t"] > since]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Agent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    src = AgentSource(f"http://127.0.0.1:{server.server_address[1]}", None, 1.0)
    src.open()
    try:
        src.poll()
        src.poll()
    finally:
        src.close()
        server.shutdown()
        server.server_close()
    assert list(src.store.series["agent.gpu0.util"]["v"]) == [50.0, 70.0]
    assert asked[1].endswith("since=3.0")  # the bad one is not fetched again
    d = src.describe()
    assert (d["status"], d["samples"], d["errors"]) == ("ok", 2, 1 + 4)
    assert d["last_error"] == "agent: GPU is lost"
