"""The host side of the worker's gRPC messages, as plain records.

The Azure Functions host talks to the Python worker over gRPC; the proxy worker hands
``azure_functions_runtime`` the generated protobuf module as ``request.properties["protos"]``. That module
ships only inside the Functions host image, so this stand-in provides the same constructor names, enum
values (from FunctionRpc.proto) and fields, while every line of the worker's own indexing and invocation
code runs unmodified.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class _Message(SimpleNamespace):
    """A message: keyword fields become attributes; unknown fields read as None."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return None

    def WhichOneof(self, group: str) -> str | None:  # protobuf's method name
        for name in (
            "json",
            "string",
            "bytes",
            "stream",
            "http",
            "int",
            "double",
            "collection_bytes",
            "collection_string",
            "collection_double",
            "collection_sint64",
            "model_binding_data",
            "collection_model_binding_data",
        ):
            if name in self.__dict__ and self.__dict__[name] is not None:
                return name
        return None

    def HasField(self, name: str) -> bool:  # protobuf's method name
        return self.__dict__.get(name) is not None


def _message(name: str, **constants: int) -> type[_Message]:
    return type(name, (_Message,), dict(constants))


class HostProtos:
    """The subset of ``FunctionRpc_pb2`` that azure_functions_runtime constructs or compares against."""

    StatusResult = _message("StatusResult", Failure=0, Success=1, Cancelled=2)
    # BindingInfo.Direction: in = 0, out = 1, inout = 2; BindingInfo.DataType: undefined = 0, string = 1, ...
    BindingInfo = _message("BindingInfo", out=1, inout=2, undefined=0, string=1, binary=2, stream=3)
    setattr(BindingInfo, "in", 0)
    WorkerInitResponse = _message("WorkerInitResponse")
    WorkerMetadata = _message("WorkerMetadata")
    FunctionMetadataResponse = _message("FunctionMetadataResponse")
    FunctionLoadResponse = _message("FunctionLoadResponse")
    InvocationResponse = _message("InvocationResponse")
    FunctionEnvironmentReloadResponse = _message("FunctionEnvironmentReloadResponse")
    RpcFunctionMetadata = _message("RpcFunctionMetadata")
    RpcRetryOptions = _message("RpcRetryOptions")
    RpcException = _message("RpcException")
    TypedData = _message("TypedData")
    ParameterBinding = _message("ParameterBinding")
    NullableString = _message("NullableString")
    NullableBool = _message("NullableBool")
    NullableDouble = _message("NullableDouble")
    NullableTimestamp = _message("NullableTimestamp")
    RpcHttpCookie = _message("RpcHttpCookie")


def request(**fields: Any) -> _Message:
    """Build a nested request record: ``request(properties=..., request=...)``."""
    return _Message(**fields)
