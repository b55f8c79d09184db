"""The host side of the worker's gRPC messages, as plain records.

The Azure Functions host talks to the Python worker over gRPC; the proxy worker hands
``azure_functions_runtime`` the generated protobuf module as ``request.properties["protos"]``. That module
ships only inside the Functions host image, so this stand-in provides the same constructor names, enum
values (from FunctionRpc.proto) and fields, while every line of the worker's own indexing and invocation
code runs unmodified.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any


class _Message(SimpleNamespace):
    """A message: keyword fields become attributes; unknown fields read as None.

    Capitalised names are not fields (FunctionRpc.proto's fields are snake_case) and raise, as protobuf does:
    the worker probes ``protos.TypedData`` to tell a module from a message (``Datum.from_typed_data``).
    """

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name[:1].isupper():
            raise AttributeError(name)
        return None

    def WhichOneof(self, group: str) -> str | None:  # protobuf's method name
        if group == "rpc_data":  # ParameterBinding's oneof: the bound value travels in `data` (a TypedData)
            return "data" if self.__dict__.get("data") is not None else None
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
    RpcTraceContext = _message("RpcTraceContext")
    RetryContext = _message("RetryContext")


def typed_json(value: object) -> _Message:
    """A ``TypedData`` carrying JSON, as the host sends a trigger payload or a trigger metadata entry."""
    return HostProtos.TypedData(json=json.dumps(value))


def request(**fields: Any) -> _Message:
    """Build a nested request record: ``request(properties=..., request=...)``."""
    return _Message(**fields)


def start_worker(app_dir: str) -> _Message:
    """Initialise the worker on ``app_dir`` (it indexes the app) unless done already, and return its metadata.

    The host starts a worker process once and sends ``worker_init_request`` once; a second init in the same
    process fails ("does not have a unique function name"), so test modules share one initialised worker.

    Raises:
        AssertionError: init or the metadata request did not succeed (with the worker's exception).
    """
    import asyncio

    from azure_functions_runtime import handle_event as worker

    if worker._metadata_result is None:  # the worker's own record of an indexed app
        init = request(
            properties={"host": "127.0.0.1", "protos": HostProtos},
            request=request(worker_init_request=request(capabilities={}, function_app_directory=app_dir)),
        )
        response = asyncio.run(worker.worker_init_request(init))
        assert response.result.status == HostProtos.StatusResult.Success, response.result.exception
    metadata = asyncio.run(worker.functions_metadata_request(request(properties={}, request=request())))
    assert metadata.result.status == HostProtos.StatusResult.Success, metadata.result.exception
    return metadata
