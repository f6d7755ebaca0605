"""A fake pynvml: it replaces pynvml's functions (monkeypatch), so the real
sampler code runs unchanged. NVML needs a GPU; the real check runs where a
GPU machine is lent (bench/gpu-check.sh)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection

import pynvml
import pytest

MIB = 2**20


class FakeNvml:
    """pynvml's functions, scripted. `unsupported`: {gpu: {function names}};
    `fail`: {(function, gpu): call numbers (1-based) that raise GpuIsLost}."""

    FUNCS = ("nvmlInit", "nvmlShutdown", "nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex",
             "nvmlDeviceGetName", "nvmlDeviceGetUUID", "nvmlDeviceGetUtilizationRates",
             "nvmlDeviceGetMemoryInfo", "nvmlDeviceGetPowerUsage",
             "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperature",
             "nvmlDeviceGetClockInfo", "nvmlDeviceGetCurrentClocksEventReasons",
             "nvmlDeviceGetPcieThroughput")

    def __init__(self, gpus: int = 2, unsupported: dict[int | None, set[str]] | None = None,
                 fail: dict[tuple[str, int | None], Collection[int]] | None = None,
                 init_error: int | None = None) -> None:
        self.gpus, self.unsupported, self.fail = gpus, unsupported or {}, fail or {}
        self.init_error = init_error
        self.calls: Counter[tuple[str, int | None]] = Counter()
        self.t0 = time.monotonic()
        self.shutdowns = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
        for name in self.FUNCS:
            monkeypatch.setattr(pynvml, name, self._wrap(name, getattr(self, "_" + name)))
        return self

    def _wrap(self, name: str, fn: Callable[..., object]) -> Callable[..., object]:
        def call(*args: object) -> object:
            gpu = args[0] if args and isinstance(args[0], int) and name != \
                "nvmlDeviceGetHandleByIndex" else None
            self.calls[(name, gpu)] += 1
            if name in self.unsupported.get(gpu, ()):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            if self.calls[(name, gpu)] in self.fail.get((name, gpu), ()):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
            return fn(*args)
        return call

    def _nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)

    def _nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def _nvmlDeviceGetCount(self) -> int:
        return self.gpus

    def _nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i  # handles are the indices

    def _nvmlDeviceGetName(self, h: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def _nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08d}"

    def _nvmlDeviceGetUtilizationRates(self, h: int) -> object:
        return pynvml.c_nvmlUtilization_t(gpu=40 + 10 * h, memory=20 + h)

    def _nvmlDeviceGetMemoryInfo(self, h: int) -> object:
        return type("Mem", (), {"used": (h + 1) * 1024 * MIB, "total": 80 * 1024 * MIB})()

    def _nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return 300_000 + 1000 * h  # mW

    def _nvmlDeviceGetTotalEnergyConsumption(self, h: int) -> int:
        return int(1e9 + (300_000 + 1000 * h) * (time.monotonic() - self.t0))  # mJ

    def _nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        assert sensor == pynvml.NVML_TEMPERATURE_GPU
        return 60 + h

    def _nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return {pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619}[clock]

    def _nvmlDeviceGetCurrentClocksEventReasons(self, h: int) -> int:
        return 0x4  # SW power cap

    def _nvmlDeviceGetPcieThroughput(self, h: int, counter: int) -> int:
        return {pynvml.NVML_PCIE_UTIL_TX_BYTES: 1000, pynvml.NVML_PCIE_UTIL_RX_BYTES: 2000}[counter]
