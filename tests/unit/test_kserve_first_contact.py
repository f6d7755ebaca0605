"""First contact with a KServe v2 server that answers what it should not: a
clear refusal (exit 3 through the caller), never an internal error (an
audit: non-protobuf metadata, a failing ModelReady, a shape of text)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from tritonclient.grpc import service_pb2 as pb

from loadkit.engine.kserve_control import grpc_index, grpc_state
from loadkit.protocols.kserve_first import mismatches
from loadkit.workload.kserve_spec import KServeScenario
from loadkit.workload.models import Client

Handler = Callable[[bytes, Any], bytes]


@contextmanager
def kserve_grpc(handlers: dict[str, Handler]) -> Iterator[str]:
    """A gRPC server answering the named methods with raw bytes."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "inference.GRPCInferenceService",
        {name: grpc.unary_unary_rpc_method_handler(h) for name, h in handlers.items()})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


GARBAGE = b"\xff\xff\xff\xff\x0f"


def metadata(_request: bytes, _ctx: Any) -> bytes:
    return pb.ModelMetadataResponse(name="m", platform="x").SerializeToString()


def unimplemented(_request: bytes, ctx: Any) -> bytes:
    ctx.abort(grpc.StatusCode.UNIMPLEMENTED, "no ModelReady here")
    return b""


def test_metadata_that_is_not_protobuf_is_a_refusal() -> None:
    with kserve_grpc({"ModelMetadata": lambda r, c: GARBAGE,
                      "RepositoryIndex": lambda r, c: GARBAGE}) as address:
        state = grpc_state(address, Client(), (), "m", "")
        assert not state.found and state.said.startswith("ModelMetadata: not a KServe v2 answer")
        assert grpc_index(address, Client(), ()) is None  # as a server with no index


def test_a_failing_model_ready_is_a_model_not_ready_with_the_server_s_words() -> None:
    with kserve_grpc({"ModelMetadata": metadata, "ModelReady": unimplemented}) as address:
        state = grpc_state(address, Client(), (), "m", "")
    assert state.found and not state.ready
    assert state.said == "ModelReady: gRPC UNIMPLEMENTED: no ModelReady here"


@pytest.mark.parametrize("shape", [["x", 8], 8])
def test_a_metadata_shape_that_is_not_integers_is_said(shape: Any) -> None:
    s = KServeScenario.model_validate({"name": "t", "kind": "kserve", "model": "m", "tensors": [
        {"name": "INPUT0", "datatype": "FP32", "shape": [1, 8]}]})
    said = mismatches(s, {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": shape}]})
    assert said == [f"INPUT0's shape in the metadata is not a list of integers: {shape}"]
