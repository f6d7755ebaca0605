"""On a machine with an NVIDIA GPU: a run samples it through NVML, and the
run's GPU figures are the hardware's, not the simulator's. Marked `gpu`; on a
machine without one it skips, saying so (bench/gpu-check.sh also puts the GPU
under load)."""

from __future__ import annotations

import pytest

from support.run import RunWorkload

pytestmark = pytest.mark.gpu


def visible_gpus() -> int:
    """GPUs NVML sees here (0: no driver, no library or no device)."""
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - the library, the driver or the device is missing
        return 0
    try:
        return pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture
def gpus() -> int:
    n = visible_gpus()
    if n == 0:
        pytest.skip("no NVIDIA GPU visible to NVML on this machine")
    return n


def test_a_run_samples_this_machines_gpus(gpus: int, run: RunWorkload) -> None:
    doc, _ = run({"name": "gpu", "duration": 2, "interval": "500ms",
                  "arrival": {"process": "constant", "rate": 20},
                  "scenarios": [{"name": "chat", "kind": "openai-chat", "max_tokens": 8}],
                  "telemetry": {"nvml": True, "interval": "250ms"}})
    tele = doc["telemetry"]
    nvml = next(s for s in tele["sources"] if s["kind"] == "nvml")
    assert nvml["status"] == "ok", nvml
    assert tele["available"] and tele["gpu_source"] == "hardware" and not tele["simulated"]
    assert len(tele["gpus"]) == gpus
    assert nvml["samples"] >= 4  # 2 s at 250 ms: about 8
    power = [v for name, s in tele["series"].items() if name.endswith(".power")
             for _t, v in s["points"]]
    assert power and all(v > 0 for v in power), tele["series"].keys()  # idle GPUs draw power too
