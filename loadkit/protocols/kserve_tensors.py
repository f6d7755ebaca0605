"""Tensor data for KServe v2 requests: the values a workload declares, made
once before the run, in both encodings the protocol uses.

- JSON (HTTP `/infer`): a flat `data` list in row-major order;
- raw (gRPC `raw_input_contents`): the values' little-endian bytes; a BYTES
  element is a 4-byte little-endian length and its bytes (Triton's and
  tritonclient's serialisation).

Random data is drawn once per variant (seeded), so the hot path splices
prepared bytes; `text: prompt` tensors are the exception (a new text per
request, as generation prompts are), built per request from cheap slices.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from loadkit.errors import InputError
from loadkit.workload.kserve_spec import FileData, PromptData, RandomData, Tensor, ValueData

NUMPY = {"BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
         "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
         "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}


def variants(tensor: Tensor) -> int:
    """How many distinct values of this tensor the run cycles through."""
    return tensor.data.variants if isinstance(tensor.data, RandomData) else 1


def values(tensor: Tensor, seed: str, variant: int) -> np.ndarray:
    """One variant of a declared tensor's values (flat), or InputError naming
    the tensor when its file cannot be read or does not fit its shape."""
    data, n = tensor.data, tensor.elements
    if isinstance(data, PromptData):
        raise ValueError("prompt tensors are built per request")
    if isinstance(data, RandomData):
        rng = np.random.default_rng(list(f"{seed}:{tensor.name}:{variant}".encode()))
        drawn = (rng.uniform(data.min, data.max, n) if data.dist == "uniform"
                 else rng.normal(data.mean, data.std, n))
        return _cast(tensor, drawn)
    if isinstance(data, ValueData):
        flat = list(data.values)
        return _cast(tensor, np.resize(np.array(flat, dtype=object), n))
    assert isinstance(data, FileData)
    return _cast(tensor, _from_file(tensor, data.file))


def _from_file(tensor: Tensor, path: str) -> np.ndarray:
    where = f"tensor {tensor.name!r}: {path}"
    try:
        if path.endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            arr = np.array(json.loads(Path(path).read_text(encoding="utf-8")), dtype=object)
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: cannot read it ({exc}); `.npy` or a JSON list, "
                         "relative to the working directory") from None
    flat = arr.reshape(-1)
    if flat.size != tensor.elements:
        raise InputError(f"{where}: holds {flat.size:,} values, the shape {tensor.shape} "
                         f"needs {tensor.elements:,}")
    return flat


def _cast(tensor: Tensor, flat: np.ndarray) -> np.ndarray:
    if tensor.datatype == "BYTES":
        return np.array([v if isinstance(v, bytes) else str(v).encode() for v in flat],
                        dtype=object)
    kind = NUMPY[tensor.datatype]
    try:
        if np.issubdtype(kind, np.integer):
            info = np.iinfo(kind)
            return np.clip(np.rint(flat.astype(np.float64)), info.min, info.max).astype(kind)
        return flat.astype(kind)
    except (TypeError, ValueError):
        raise InputError(f"tensor {tensor.name!r}: its values are not {tensor.datatype}") \
            from None


def as_json(tensor: Tensor, flat: np.ndarray) -> list:
    """The JSON `data` list of a tensor's values."""
    if tensor.datatype == "BYTES":
        return [b.decode("utf-8", "replace") for b in flat]
    return flat.tolist()


def as_raw(tensor: Tensor, flat: np.ndarray) -> bytes:
    """The raw (`raw_input_contents`) bytes of a tensor's values."""
    if tensor.datatype == "BYTES":
        return bytes_raw(list(flat))
    return np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<")).tobytes()


def bytes_raw(elements: list[bytes]) -> bytes:
    """BYTES elements as Triton serialises them: length-prefixed, little-endian."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def bytes_elements(raw: bytes) -> list[bytes]:
    """The inverse of bytes_raw; ValueError when the lengths overrun."""
    out, i = [], 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise ValueError("truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, i)
        i += 4
        if i + n > len(raw):
            raise ValueError("BYTES element overruns its tensor")
        out.append(raw[i:i + n])
        i += n
    return out
