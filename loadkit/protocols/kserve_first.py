"""First contact with a KServe v2 server, before the probe: where its gRPC
endpoint is, which model to load, whether that model is ready, and whether
the tensors the workload declares are those the model takes.

A refusal here stops the run before the clock starts (exit 3, as the probe's
refusals do) with the server's own words and what to change; a model the
workload does not name and the server cannot name for it is bad input
(exit 2), as for the OpenAI dialects. Without this, a typo in a tensor name
would be an hour of HTTP 400s.
"""

from __future__ import annotations

import dataclasses
import os
from urllib.parse import urlsplit

from loadkit.engine import kserve_control as control
from loadkit.errors import InputError, TargetRejected
from loadkit.protocols.registry import identity
from loadkit.workload.kserve_spec import KServeScenario
from loadkit.workload.loader import LoadedWorkload

TRITON_GRPC_PORT = 8001


def needs_grpc(loaded: LoadedWorkload) -> bool:
    """The workload has a gRPC KServe scenario (the embedded simulator opens a port)."""
    return any(isinstance(s, KServeScenario) and s.transport == "grpc"
               for s in loaded.workload.scenarios)


def grpc_address(base_url: str) -> str:
    """Where a gRPC scenario with no `address` goes: the embedded simulator's
    gRPC port, else the target's host on Triton's default gRPC port."""
    embedded = getattr(base_url, "grpc", None)
    if embedded:
        return str(embedded)
    host = urlsplit(base_url).hostname or "127.0.0.1"
    return f"[{host}]:{TRITON_GRPC_PORT}" if ":" in host else f"{host}:{TRITON_GRPC_PORT}"


def first_contact(loaded: LoadedWorkload, base_url: str) -> tuple[LoadedWorkload, list[str]]:
    """The workload with its KServe scenarios' addresses and models resolved,
    and notes for the console; TargetRejected / InputError on a refusal."""
    w = loaded.workload
    notes: list[str] = []
    scenarios = list(w.scenarios)
    for i, s in enumerate(scenarios):
        if not isinstance(s, KServeScenario):
            continue
        update: dict = {}
        if s.transport == "grpc" and s.address is None:
            update["address"] = grpc_address(base_url)
        s = s.model_copy(update=update)
        headers = identity(s, w.all_tenants[0], os.environ)
        where = s.address if s.transport == "grpc" else base_url
        if s.model is None:
            s = s.model_copy(update={"model": _discover(s, base_url, w.client, headers)})
            notes.append(f"model {s.model} (from the repository index at {where})")
        _check(s, base_url, w.client, headers)
        scenarios[i] = s
    if not notes and scenarios == list(w.scenarios):
        return loaded, notes
    workload = w.model_copy(update={"scenarios": scenarios})
    return dataclasses.replace(loaded, workload=workload), notes


def _metadata(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((k.lower(), v) for k, v in headers.items()
                 if k.lower() not in ("user-agent", "content-type"))


def _discover(s: KServeScenario, base_url: str, client: object,
              headers: dict[str, str]) -> str:
    how = f"name it with `model:` in scenario {s.name!r}"
    if s.transport == "grpc":
        assert s.address is not None
        names = control.grpc_index(s.address, client, _metadata(headers))  # type: ignore[arg-type]
    else:
        names = control.http_index(base_url, client, headers)  # type: ignore[arg-type]
    if names is None:
        raise InputError(f"scenario {s.name!r} names no model, and the server has no "
                         f"repository index to list its models: {how}")
    if len(names) == 1:
        return names[0]
    if not names:
        raise InputError(f"scenario {s.name!r} names no model, and the server lists no "
                         f"ready model: {how}")
    raise InputError(f"scenario {s.name!r} names no model, and the server serves "
                     f"{len(names)} ({', '.join(names[:20])}): {how}")


def _check(s: KServeScenario, base_url: str, client: object, headers: dict[str, str]) -> None:
    assert s.model is not None
    where = f"gRPC {s.address}" if s.transport == "grpc" else "HTTP"
    if s.transport == "grpc":
        assert s.address is not None
        state = control.grpc_state(s.address, client, _metadata(headers),  # type: ignore[arg-type]
                                   s.model, s.version)
    else:
        state = control.http_state(base_url, client, headers, s.model,  # type: ignore[arg-type]
                                   s.version)
    who = f"scenario {s.name!r}: model {s.model!r}" + (f" version {s.version}" if s.version
                                                        else "")
    if not state.found:
        raise TargetRejected(f"{who} is not served over {where} ({state.said}) -> check "
                             "`model:` and `version:` (the server's repository index lists "
                             "what it serves)")
    if not state.ready:
        raise TargetRejected(f"{who} is not ready over {where} ({state.said}) -> wait for it "
                             "to load, or check the server's log")
    if s.mode == "infer" and state.metadata is not None \
            and (problems := mismatches(s, state.metadata)):
        raise TargetRejected(f"{who}: the declared tensors do not fit its metadata: "
                                 + "; ".join(problems) + " -> fix scenarios[].tensors")


def mismatches(s: KServeScenario, metadata: dict) -> list[str]:
    """How the declared tensors differ from the model's inputs (names,
    datatypes, ranks, fixed dimensions); a `-1` dimension takes any size."""
    declared = {t.name: t for t in s.tensors}
    inputs = {t.get("name"): t for t in metadata.get("inputs") or [] if isinstance(t, dict)}
    out = []
    for name, t in declared.items():
        m = inputs.get(name)
        if m is None:
            out.append(f"{name} is not an input (inputs: {', '.join(map(str, inputs)) or 'none'})")
            continue
        if m.get("datatype") != t.datatype:
            out.append(f"{name} is {m.get('datatype')}, declared {t.datatype}")
        shape = m.get("shape") or []
        if not isinstance(shape, list) or not all(type(d) is int for d in shape):
            out.append(f"{name}'s shape in the metadata is not a list of integers: "
                       f"{str(shape)[:40]}")
            continue
        if shape and (len(shape) != len(t.shape)
                      or any(d not in (-1, g) for d, g in zip(shape, t.shape, strict=True))):
            out.append(f"{name} has shape {shape}, declared {t.shape}")
    return out
