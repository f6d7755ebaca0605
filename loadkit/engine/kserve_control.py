"""KServe v2 control plane: the server's and a model's readiness, a model's
metadata and Triton's repository index, over HTTP (httpx, as the rest of the
pre-flight) or gRPC (a blocking channel with tritonclient's stubs: first
contact happens before the run's event loop exists).

Plain data comes back; what it means for the run (discovery, the declared
tensors against the metadata) is protocols.kserve_first's to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from loadkit.engine.client import ssl_context
from loadkit.engine.grpc_stubs import SERVICE, decode_error, grpc_module, service_pb2
from loadkit.errors import TargetUnreachable
from loadkit.urls import without_credentials
from loadkit.workload.models import Client


@dataclass
class ModelState:
    """What the server says of one model: `found` False with `said` (its
    words) when it does not know it; metadata as KServe's JSON shape."""

    found: bool
    ready: bool
    metadata: dict[str, Any] | None
    said: str = ""


def http_state(base_url: str, client: Client, headers: dict[str, str], model: str,
               version: str) -> ModelState:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
    with _http(client) as c:
        meta = _get(c, base_url, path, headers)
        if meta.status_code != 200:
            return ModelState(False, False, None, f"HTTP {meta.status_code}: {meta.text[:200]}")
        ready = _get(c, base_url, path + "/ready", headers)
    try:
        doc = meta.json()
    except ValueError:
        doc = None
    return ModelState(True, ready.status_code == 200, doc if isinstance(doc, dict) else None,
                      f"HTTP {ready.status_code}: {ready.text[:200]}")


def http_index(base_url: str, client: Client, headers: dict[str, str]) -> list[str] | None:
    """The ready models of Triton's repository index; None: not served."""
    with _http(client) as c:
        try:
            resp = c.post(base_url + "/v2/repository/index", json={"ready": True},
                          headers=headers)
        except httpx.HTTPError as exc:
            raise _unreachable(base_url, exc) from None
    if resp.status_code != 200:
        return None
    try:
        return [m["name"] for m in resp.json() if m.get("state", "READY") == "READY"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def grpc_state(address: str, client: Client, metadata: tuple[tuple[str, str], ...],
               model: str, version: str) -> ModelState:
    grpc, pb = grpc_module(), service_pb2()
    DecodeError = decode_error()
    with _channel(grpc, address) as channel:
        step = "ModelMetadata"
        try:
            meta = pb.ModelMetadataResponse.FromString(_unary(
                channel, step, pb.ModelMetadataRequest(name=model, version=version), client,
                metadata))
            step = "ModelReady"
            ready = pb.ModelReadyResponse.FromString(_unary(
                channel, step, pb.ModelReadyRequest(name=model, version=version), client,
                metadata)).ready
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise TargetUnreachable(f"gRPC {address}: {exc.details()}. Is the server "
                                        "running, and is the address right?") from None
            return ModelState(step == "ModelReady", False, None,
                              f"{step}: gRPC {exc.code().name}: {exc.details()}")
        except DecodeError as exc:  # an answer that is not the protocol's message
            return ModelState(False, False, None, f"{step}: not a KServe v2 answer ({exc})")
    doc = {"name": meta.name, "versions": list(meta.versions), "platform": meta.platform,
           **{key: [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                    for t in getattr(meta, key)] for key in ("inputs", "outputs")}}
    return ModelState(True, ready, doc, f"ModelReady: {str(ready).lower()}")


def grpc_index(address: str, client: Client,
               metadata: tuple[tuple[str, str], ...]) -> list[str] | None:
    grpc, pb = grpc_module(), service_pb2()
    DecodeError = decode_error()
    with _channel(grpc, address) as channel:
        try:
            raw = _unary(channel, "RepositoryIndex", pb.RepositoryIndexRequest(ready=True),
                         client, metadata)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise TargetUnreachable(f"gRPC {address}: {exc.details()}") from None
            return None
    try:
        return [m.name for m in pb.RepositoryIndexResponse.FromString(raw).models]
    except DecodeError:  # not the protocol's message: as a server with no index
        return None


def _channel(grpc: Any, address: str) -> Any:
    return grpc.insecure_channel(address)


def _unary(channel: Any, method: str, message: Any, client: Client,
           metadata: tuple[tuple[str, str], ...]) -> bytes:
    call = channel.unary_unary(SERVICE + method)
    return bytes(call(message.SerializeToString(), metadata=metadata or None,
                      timeout=client.timeouts.connect + client.timeouts.first_byte))


def _http(client: Client) -> httpx.Client:
    timeout = httpx.Timeout(client.timeouts.first_byte, connect=client.timeouts.connect)
    return httpx.Client(verify=ssl_context(client), timeout=timeout, follow_redirects=False)


def _get(c: httpx.Client, base_url: str, path: str, headers: dict[str, str]) -> httpx.Response:
    try:
        return c.get(base_url + path, headers=headers)
    except httpx.HTTPError as exc:
        raise _unreachable(base_url, exc) from None


def _unreachable(base_url: str, exc: Exception) -> TargetUnreachable:
    return TargetUnreachable(f"{without_credentials(base_url)}: {type(exc).__name__}: {exc}")
