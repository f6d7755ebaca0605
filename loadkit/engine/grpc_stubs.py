"""The gRPC libraries, imported on demand with a clear message when missing.

grpcio and tritonclient are an extra (`pip install 'loadkit[grpc]'`): most
runs speak HTTP only and need neither. tritonclient ships the generated
stubs of Triton's `inference.GRPCInferenceService`, a superset of the KServe
v2 gRPC protocol, so loadkit carries no `.proto` of its own.
"""

from __future__ import annotations

from types import ModuleType

from loadkit.errors import InputError

SERVICE = "/inference.GRPCInferenceService/"
HINT = ("KServe v2 over gRPC needs grpcio and tritonclient: pip install 'loadkit[grpc]' "
        "(or: pip install grpcio 'tritonclient[grpc]')")


def grpc_module() -> ModuleType:
    try:
        import grpc
        import grpc.aio
    except ImportError:
        raise InputError(HINT) from None
    return grpc


def decode_error() -> type[Exception]:
    """protobuf's error for bytes that are not the message they should be."""
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    return DecodeError


def service_pb2() -> ModuleType:
    """tritonclient's generated messages (ModelInferRequest, ...)."""
    try:
        from tritonclient.grpc import service_pb2 as pb
    except ImportError as exc:
        raise InputError(f"{HINT} ({exc})") from None
    return pb
