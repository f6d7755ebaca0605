"""NVML sampling of this machine's GPUs (pynvml, from the nvidia-ml-py package).

:class:`Nvml` reads every field of every GPU once; :class:`NvmlSource` does
that on a poller thread into a Store (series ``gpu<i>.<field>``), and the
agent (agent.py) does it into a ring buffer it serves over HTTP.

pynvml is imported lazily and its functions are looked up on the module at
each call, so tests replace them with a fake. A field a GPU does not support
(NVMLError_NotSupported, NoPermission, FunctionNotFound) is listed as
unsupported and never asked again; any other error in the middle of a run is
counted, the field is skipped for that sample, and sampling goes on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

from loadkit.telemetry.store import Source

# field -> unit. Energy is the driver's cumulative counter (J since it loaded).
FIELDS: dict[str, str] = {
    "util": "%", "mem_util": "%", "mem_used": "MiB", "power": "W", "energy": "J",
    "temp": "C", "sm_clock": "MHz", "mem_clock": "MHz", "clock_reasons": "bitmask",
    "pcie_tx_kbps": "KB/s", "pcie_rx_kbps": "KB/s",
}
_MIB = 2**20


class NvmlUnavailable(Exception):
    """NVML cannot be used here; the message says why, for run.json."""


class Nvml:
    """This machine's GPUs through NVML; ``read(i)`` returns one sample."""

    def __init__(self) -> None:
        self.nv: Any = None
        self.handles: list[Any] = []
        self.gpus: list[dict] = []
        self.errors = 0
        self.last_error = ""

    def open(self) -> list[dict]:
        try:
            import pynvml
        except ImportError as exc:
            raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc}); "
                                  "pip install nvidia-ml-py") from None
        nv = self.nv = pynvml
        try:
            nv.nvmlInit()
        except nv.NVMLError as exc:
            raise NvmlUnavailable(_init_reason(nv, exc)) from None
        try:
            count = nv.nvmlDeviceGetCount()
            if count == 0:
                raise NvmlUnavailable("no NVIDIA GPU: NVML found 0 devices")
            self.handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            for i, h in enumerate(self.handles):
                gpu = {"index": i, "name": _text(self._quiet(nv.nvmlDeviceGetName, h)) or "",
                       "uuid": _text(self._quiet(nv.nvmlDeviceGetUUID, h)) or "",
                       "memory_total_mib": None, "unsupported": []}
                mem = self._quiet(nv.nvmlDeviceGetMemoryInfo, h)
                if mem is not None:
                    gpu["memory_total_mib"] = round(mem.total / _MIB, 1)
                self.gpus.append(gpu)
        except nv.NVMLError as exc:
            self.close()
            raise NvmlUnavailable(f"NVML could not list the GPUs: {exc}") from None
        except NvmlUnavailable:
            self.close()
            raise
        return self.gpus

    def close(self) -> None:
        if self.nv is not None:
            with contextlib.suppress(Exception):  # shutting down is best effort
                self.nv.nvmlShutdown()
            self.nv = None

    def read(self, i: int) -> dict[str, float]:
        """Every supported field of GPU ``i`` now; unsupported ones are skipped."""
        nv, h, gpu = self.nv, self.handles[i], self.gpus[i]
        out: dict[str, float] = {}
        for fields, reader in _READERS:
            if fields[0] in gpu["unsupported"]:
                continue
            try:
                values = reader(nv, h)
            except nv.NVMLError as exc:
                if isinstance(exc, _unsupported(nv)):
                    gpu["unsupported"].extend(f for f in fields if f not in gpu["unsupported"])
                else:
                    self.errors += 1
                    self.last_error = f"gpu{i} {'/'.join(fields)}: {exc}"
                continue
            except Exception as exc:  # noqa: BLE001 - ctypes surprises count, not crash
                self.errors += 1
                self.last_error = f"gpu{i} {'/'.join(fields)}: {type(exc).__name__}: {exc}"
                continue
            out.update(zip(fields, values))
        return out

    def _quiet(self, fn: Callable, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.nv.NVMLError:
            return None


class NvmlSource(Source):
    """Local GPUs into series ``gpu<i>.<field>`` (metric ``gpu.<field>``)."""

    kind = "nvml"

    def __init__(self, interval: float, required: bool = False) -> None:
        super().__init__("local", interval)
        self.required = required
        self.nvml = Nvml()

    def open(self) -> bool:
        try:
            self.gpus = self.nvml.open()
        except NvmlUnavailable as exc:
            # `nvml: true` asked for it: its absence is a failure, not a shrug.
            self.status, self.reason = ("failed" if self.required else "unavailable"), str(exc)
            return False
        return True

    def poll(self) -> None:
        # One instant for the tick's GPUs: a window then holds every GPU's
        # sample of a tick or none (were each GPU stamped as read, a window's
        # edge could fall between two, and a mean over GPUs tilt to one).
        t_ns = time.monotonic_ns()
        for i in range(len(self.gpus)):
            values = self.nvml.read(i)
            for field, value in values.items():
                self.store.add(f"gpu{i}.{field}", value, t_ns, metric=f"gpu.{field}",
                               unit=FIELDS[field], labels={"gpu": str(i)}, source="nvml")
            self.samples += bool(values)  # one per GPU read, as the agent counts
        self.errors, self.last_error = self.nvml.errors, self.nvml.last_error

    def close(self) -> None:
        self.nvml.close()


def _init_reason(nv: Any, exc: Exception) -> str:
    if isinstance(exc, nv.NVMLError_LibraryNotFound):
        return f"NVML library not found: {exc} (no NVIDIA driver on this machine)"
    if isinstance(exc, nv.NVMLError_DriverNotLoaded):
        return f"no NVIDIA GPU: the NVIDIA driver is not loaded ({exc})"
    if isinstance(exc, nv.NVMLError_NoPermission):
        return f"no permission to use NVML: {exc}"
    return f"NVML failed to start: {exc}"


def _unsupported(nv: Any) -> tuple[type, ...]:
    return (nv.NVMLError_NotSupported, nv.NVMLError_NoPermission,
            nv.NVMLError_FunctionNotFound)


def _text(value: Any) -> str | None:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _utilization(nv: Any, h: Any) -> tuple[float, float]:
    r = nv.nvmlDeviceGetUtilizationRates(h)
    return r.gpu, r.memory


def _clock_reasons(nv: Any, h: Any) -> tuple[float]:
    fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) \
        or nv.nvmlDeviceGetCurrentClocksThrottleReasons  # drivers before 535
    return (fn(h),)


# (fields, reader): one NVML call each, in the order of FIELDS.
_READERS: list[tuple[tuple[str, ...], Callable[[Any, Any], tuple]]] = [
    (("util", "mem_util"), _utilization),
    (("mem_used",), lambda nv, h: (round(nv.nvmlDeviceGetMemoryInfo(h).used / _MIB, 1),)),
    (("power",), lambda nv, h: (nv.nvmlDeviceGetPowerUsage(h) / 1000.0,)),
    (("energy",), lambda nv, h: (nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0,)),
    (("temp",), lambda nv, h: (nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),)),
    (("sm_clock",), lambda nv, h: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),)),
    (("mem_clock",), lambda nv, h: (nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),)),
    (("clock_reasons",), _clock_reasons),
    (("pcie_tx_kbps",), lambda nv, h: (nv.nvmlDeviceGetPcieThroughput(
        h, nv.NVML_PCIE_UTIL_TX_BYTES),)),
    (("pcie_rx_kbps",), lambda nv, h: (nv.nvmlDeviceGetPcieThroughput(
        h, nv.NVML_PCIE_UTIL_RX_BYTES),)),
]
