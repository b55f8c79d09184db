"""A loopback HTTPS fake of the ARM resource providers the deployment targets write to, built from the REST specs.

Resources are seeded as ARM returns them (``id``, ``type``, ``name``, ``location``, ``tags``, ``properties``) and
served at their ids with a bearer token and a known ``api-version``:

- ``Microsoft.Network/applicationGateways``: ``GET``; ``PATCH`` (``ApplicationGateways_UpdateTags``, 200) replaces
  the tags;
- ``Microsoft.ApiManagement/service``: ``GET``; ``POST .../refreshHostnames`` (``2025-09-01-preview``: 202 with
  ``Location`` and ``Retry-After``, polled until 200 with the service); ``GET .../certificates`` (a list with
  ``nextLink`` paging, ``page_size`` a page); ``POST .../certificates/{id}/refreshSecret`` (200 with the entity);
- ``Microsoft.Web/certificates``: ``GET``; ``PUT`` (200) re-reads "Key Vault": the answer's ``thumbprint`` is the
  one ``key_vault`` holds for ``keyVaultSecretName`` (uppercase hex, as App Service writes it);
- ``Microsoft.App/managedEnvironments/certificates``: ``GET``; ``PUT`` answers ``provisioningState: Pending`` and
  turns ``Succeeded`` after ``poll_rounds`` GETs.

``write_mode`` makes every write long-running the other ways ARM does it: ``"async_operation"`` (201/202 with
``Azure-AsyncOperation``, ``{"status": "InProgress"}`` for ``poll_rounds`` polls, then ``Succeeded`` or
``operation_fails``'s ``Failed``) or ``"location"`` (202 with ``Location``). Failures, each once or per resource:
``conflict_once()`` (409 ``AnotherOperationInProgress``), ``throttle_next(seconds)`` (429 with ``Retry-After``),
``forbid(resource_id)`` (403 ``AuthorizationFailed``), an unknown id (404 ``ResourceNotFound``), a wrong token
(401 ``InvalidAuthenticationToken``), an unknown api-version (400 ``InvalidApiVersionParameter``), always in
ARM's error body ``{"error": {"code", "message", "details"}}``. ``pushes`` records what a push changed.
"""

from __future__ import annotations

import copy
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.fakes.loopback import LoopbackServer, Request, Response
from tests.fakes.redirecting import TlsFiles, tls_files

__all__ = ["API_VERSIONS", "ArmTargetsFake", "arm_error"]

API_VERSIONS: Mapping[str, frozenset[str]] = {
    "microsoft.network": frozenset({"2024-05-01", "2023-09-01"}),
    "microsoft.apimanagement": frozenset({"2024-05-01", "2022-08-01", "2025-09-01-preview"}),
    "microsoft.web": frozenset({"2024-04-01", "2023-12-01"}),
    "microsoft.app": frozenset({"2025-01-01", "2024-10-02-preview"}),
}
_REFRESH_HOSTNAMES_VERSION = "2025-09-01-preview"


def arm_error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """ARM's error answer."""
    body = {"error": {"code": code, "message": message, "details": []}}
    return Response(status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})})


def _json(status: int, body: object | None, headers: Mapping[str, str] | None = None) -> Response:
    data = b"" if body is None else json.dumps(body).encode()
    return Response(status, data, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


class ArmTargetsFake:
    """The fake ARM endpoint for deployment targets (see the module docstring).

    Attributes:
        token: the only bearer token it accepts.
        resources: the seeded resources, by lower-cased id.
        key_vault: what "Key Vault" holds: secret name (lower-cased) -> the current version's thumbprint.
        write_mode: ``"sync"``, ``"async_operation"`` or ``"location"``.
        poll_rounds: how many polls answer "still running" before an operation ends.
        retry_after: the ``Retry-After`` seconds a long-running answer carries.
        operation_fails: ``(code, message)`` an asynchronous operation fails with, or ``None``.
        page_size: API Management certificate entities per list page.
        pushes: ``(action, resource id)`` of every change a push made, in order.
        mounted: another answer function consulted first (Resource Graph), returning ``None`` to pass.
    """

    def __init__(self, directory: Path, *, token: str) -> None:
        self.token = token
        self.resources: dict[str, dict[str, Any]] = {}
        self.key_vault: dict[str, str] = {}
        self.write_mode = "sync"
        self.poll_rounds = 1
        self.retry_after = 3
        self.operation_fails: tuple[str, str] | None = None
        self.page_size = 100
        self.pushes: list[tuple[str, str]] = []
        self.mounted: Callable[[Request], Response | None] | None = None
        self.tls: TlsFiles = tls_files(directory, ("127.0.0.1", "localhost"))
        self._failures: list[tuple[str | None, Response]] = []
        self._forbidden: set[str] = set()
        self._operations: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server = LoopbackServer(self.handle, tls=self.tls.server_context())

    @property
    def url(self) -> str:
        """The endpoint, ``https://127.0.0.1:{port}``."""
        return self._server.url

    @property
    def requests(self) -> list[Request]:
        """Every request received, in order."""
        return self._server.requests

    def seed(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """Add a resource (a deep copy); answers the stored copy."""
        stored = copy.deepcopy(dict(resource))
        self.resources[str(stored["id"]).lower()] = stored
        return stored

    def conflict_once(self, method: str | None = None) -> None:
        """Answer the next request (of ``method``) 409 ``AnotherOperationInProgress``, as ARM does mid-update."""
        self._failures.append(
            (
                method,
                arm_error(
                    409,
                    "AnotherOperationInProgress",
                    "Another operation on this or dependent resource is in progress.",
                    {"Retry-After": "10"},
                ),
            )
        )

    def throttle_next(self, seconds: int, *, times: int = 1) -> None:
        """Answer the next ``times`` requests 429 with ``Retry-After: seconds``."""
        for _ in range(times):
            self._failures.append(
                (None, arm_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": str(seconds)}))
            )

    def fail_next(self, response: Response, *, method: str | None = None) -> None:
        """Answer the next request (of ``method``) with ``response``."""
        self._failures.append((method, response))

    def forbid(self, resource_id: str) -> None:
        """Answer every request on ``resource_id`` (and below it) 403 ``AuthorizationFailed``."""
        self._forbidden.add(resource_id.lower())

    def __enter__(self) -> ArmTargetsFake:
        self._server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._server.stop()

    # --- the answer function -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """ARM's answer to ``request``."""
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if self.mounted is not None:
            answer = self.mounted(request)
            if answer is not None:
                return answer
        with self._lock:
            failure = next((f for f in self._failures if f[0] in (None, request.method)), None)
            if failure is not None:
                self._failures.remove(failure)
                return failure[1]
            return self._serve(request)

    def _serve(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/operations/") or path.startswith("/locations/"):
            return self._poll(path)
        folded = path.lower()
        if any(folded == f or folded.startswith(f + "/") for f in self._forbidden):
            return arm_error(
                403,
                "AuthorizationFailed",
                f"The client does not have authorization to perform action over scope '{path}' or the scope is "
                "invalid.",
            )
        provider = _provider(folded)
        api_version = request.query.get("api-version", "")
        if provider not in API_VERSIONS or api_version not in API_VERSIONS[provider]:
            return arm_error(400, "InvalidApiVersionParameter", f"The api-version '{api_version}' is invalid.")
        if folded.endswith("/refreshhostnames") and request.method == "POST":
            if api_version != _REFRESH_HOSTNAMES_VERSION:
                return arm_error(400, "InvalidApiVersionParameter", "refreshHostnames needs 2025-09-01-preview.")
            return self._refresh_hostnames(path[: -len("/refreshHostnames")])
        if folded.endswith("/refreshsecret") and request.method == "POST":
            return self._refresh_secret(path[: -len("/refreshSecret")])
        if folded.endswith("/certificates") and "microsoft.apimanagement/service/" in folded:
            return self._list_certificates(request, path[: -len("/certificates")])
        resource = self.resources.get(folded)
        if resource is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{path}' was not found.")
        if request.method == "GET":
            return _json(200, self._on_get(resource))
        if request.method == "PATCH" and resource["type"].lower() == "microsoft.network/applicationgateways":
            return self._update_tags(resource, request.json())
        if request.method == "PUT":
            return self._put(resource, request.json())
        return arm_error(405, "MethodNotAllowed", f"{request.method} is not supported here.")

    def _on_get(self, resource: dict[str, Any]) -> dict[str, Any]:
        properties = resource.get("properties", {})
        if properties.get("provisioningState") == "Pending":
            pending = properties.setdefault("_pollsLeft", self.poll_rounds)
            if pending <= 0:
                properties.pop("_pollsLeft")
                properties["provisioningState"] = "Succeeded"
            else:
                properties["_pollsLeft"] = pending - 1
        return _shown(resource)

    # --- writes ------------------------------------------------------------------------------------------------

    def _update_tags(self, resource: dict[str, Any], body: Any) -> Response:
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, dict):
            return arm_error(400, "InvalidRequestFormat", "tags is required.")
        resource["tags"] = {str(k): str(v) for k, v in tags.items()}
        self.pushes.append(("tags", resource["id"]))
        return self._written(resource, 200)

    def _put(self, resource: dict[str, Any], body: Any) -> Response:
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict) or not body.get("location"):
            return arm_error(400, "InvalidRequestContent", "location and properties are required.")
        kind = resource["type"].lower()
        properties = resource.setdefault("properties", {})
        given = body["properties"]
        if kind == "microsoft.web/certificates":
            for key in ("keyVaultId", "keyVaultSecretName"):
                if given.get(key) != properties.get(key):
                    return arm_error(400, "BadRequest", f"{key} must not change on a re-put in this fake.")
            secret = str(given["keyVaultSecretName"]).lower()
            if secret in self.key_vault:
                properties["thumbprint"] = self.key_vault[secret].upper()
            properties["keyVaultSecretStatus"] = "Succeeded"
            self.pushes.append(("put", resource["id"]))
            return self._written(resource, 200)
        if kind == "microsoft.app/managedenvironments/certificates":
            key_vault = given.get("certificateKeyVaultProperties")
            if not isinstance(key_vault, dict) or not key_vault.get("keyVaultUrl") or not key_vault.get("identity"):
                return arm_error(400, "InvalidCertificateKeyVaultProperties", "identity and keyVaultUrl required.")
            properties["certificateKeyVaultProperties"] = key_vault
            secret = str(key_vault["keyVaultUrl"]).rstrip("/").rsplit("/", 1)[-1].lower()
            if secret in self.key_vault:
                properties["thumbprint"] = self.key_vault[secret].upper()
            properties["provisioningState"] = "Pending"
            properties["_pollsLeft"] = self.poll_rounds
            self.pushes.append(("put", resource["id"]))
            return self._written(resource, 200)
        return arm_error(405, "MethodNotAllowed", "PUT is not supported for this type in the fake.")

    def _written(self, resource: dict[str, Any], status: int) -> Response:
        if self.write_mode == "sync":
            return _json(status, _shown(resource))
        operation = self._new_operation(result=None)
        if self.write_mode == "async_operation":
            return _json(
                201,
                _shown(resource),
                {"Azure-AsyncOperation": f"{self.url}/operations/{operation}", "Retry-After": str(self.retry_after)},
            )
        return _json(202, None, {"Location": f"{self.url}/locations/{operation}", "Retry-After": str(self.retry_after)})

    def _refresh_hostnames(self, service_id: str) -> Response:
        service = self.resources.get(service_id.lower())
        if service is None:
            return arm_error(404, "ResourceNotFound", f"The Resource '{service_id}' was not found.")
        self.pushes.append(("refreshHostnames", service["id"]))
        operation = self._new_operation(result=copy.deepcopy(service))
        return _json(202, None, {"Location": f"{self.url}/locations/{operation}", "Retry-After": str(self.retry_after)})

    def _refresh_secret(self, entity_id: str) -> Response:
        entity = self.resources.get(entity_id.lower())
        if entity is None:
            return arm_error(404, "ResourceNotFound", f"The certificate '{entity_id}' was not found.")
        self.pushes.append(("refreshSecret", entity["id"]))
        return _json(200, entity)

    def _list_certificates(self, request: Request, service_id: str) -> Response:
        if service_id.lower() not in self.resources:
            return arm_error(404, "ResourceNotFound", f"The Resource '{service_id}' was not found.")
        prefix = service_id.lower() + "/certificates/"
        entities = [r for key, r in sorted(self.resources.items()) if key.startswith(prefix)]
        start = int(request.query.get("$skip", "0") or 0)
        page = entities[start : start + self.page_size]
        body: dict[str, Any] = {"value": page}
        if start + self.page_size < len(entities):
            version = request.query.get("api-version", "")
            body["nextLink"] = (
                f"{self.url}{service_id}/certificates?api-version={version}&$skip={start + self.page_size}"
            )
        return _json(200, body)

    # --- long-running operations -------------------------------------------------------------------------------

    def _new_operation(self, *, result: dict[str, Any] | None) -> str:
        operation = secrets.token_hex(8)
        self._operations[operation] = {"left": self.poll_rounds, "result": result}
        return operation

    def _poll(self, path: str) -> Response:
        kind, _, operation = path.strip("/").partition("/")
        state = self._operations.get(operation)
        if state is None:
            return arm_error(404, "OperationNotFound", "The operation was not found.")
        retry = {"Retry-After": str(self.retry_after)}
        if state["left"] > 0:
            state["left"] -= 1
            if kind == "operations":
                return _json(200, {"id": path, "status": "InProgress"}, retry)
            return _json(202, None, {"Location": f"{self.url}{path}", **retry})
        if kind == "operations":
            if self.operation_fails is not None:
                code, message = self.operation_fails
                return _json(200, {"id": path, "status": "Failed", "error": {"code": code, "message": message}})
            return _json(200, {"id": path, "status": "Succeeded"})
        result = state["result"]
        return _json(200, result) if result is not None else Response(204)


def _shown(resource: dict[str, Any]) -> dict[str, Any]:
    shown = copy.deepcopy(resource)
    shown.get("properties", {}).pop("_pollsLeft", None)
    return shown


def _provider(path: str) -> str:
    parts = path.split("/providers/", 1)
    return parts[1].split("/", 1)[0] if len(parts) == 2 else ""
