"""Azure Resource Manager, spoken for real: one client for the deployment targets and Resource Graph.

It sends through azure-core's pipeline with ARM's challenge-aware bearer policy (``azure.mgmt.core``) and *no*
redirect or retry policy, so a token never follows a ``Location`` and every request is counted
(``requests_sent``). What ARM's RPC contract says, and how the client answers:

- a write answered 201/202 (or 200) with ``Azure-AsyncOperation``: poll that URL until its ``status`` is
  ``Succeeded``, ``Failed`` or ``Canceled``, then read the resource (PUT/PATCH) or the ``Location`` (POST);
- a write answered 202 with ``Location`` only: poll it until it stops answering 202 (200 carries the result);
- a PUT answered with a non-terminal ``properties.provisioningState``: poll the resource until it is terminal;
- polls wait what ``Retry-After`` says (else ``poll_interval``) through the injected ``sleep``; the total wait is
  bounded by ``wait_budget_seconds``, so one push never outlives a Functions invocation;
- 429 and 5xx are retried in place (``Retry-After`` honoured) within the same budget, then raised as retryable;
- 409 (``AnotherOperationInProgress``, ``Conflict``) is ``RetryableError``: the outbox tries again later;
- 404 is ``PermanentError`` (``arm_not_found``); 403 ``AuthorizationFailed`` names the role the caller needs;
- ARM's error body ``{"error": {"code", "message", "details"}}`` becomes the error's message (trimmed).

A poll URL must be on the ARM endpoint's own host: the bearer token goes with every poll.
Heavy modules (``azure.core``, ``azure.mgmt.core``) are imported when the first request is sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from renewal.errors import PermanentError, RetryableError, ThrottledError

if TYPE_CHECKING:
    from azure.core import PipelineClient
    from azure.core.credentials import TokenCredential

__all__ = ["ARM_ENDPOINT", "ArmClient", "ArmResponse"]

logger = logging.getLogger(__name__)

ARM_ENDPOINT = "https://management.azure.com"
_TERMINAL = frozenset({"succeeded", "failed", "canceled", "cancelled"})
_IN_PLACE_ATTEMPTS = 4
# Codes an asynchronous operation may fail with that a later attempt can get past.
_TRANSIENT_CODES = frozenset(
    {"anotheroperationinprogress", "conflict", "internalservererror", "serviceunavailable", "retryableerror"}
)
_MESSAGE_LIMIT = 300


@dataclass(frozen=True, slots=True)
class ArmResponse:
    """One final ARM answer.

    Attributes:
        status: the HTTP status of the answer that carried ``body``.
        body: its JSON body (``{}`` when empty).
        headers: its headers, names lower-cased.
    """

    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


class ArmClient:
    """Sends ARM requests with the app's identity and waits for long-running operations.

    Attributes:
        endpoint: the ARM endpoint, without a trailing slash.
        requests_sent: how many HTTP requests this client sent (polls and in-place retries included).
    """

    def __init__(
        self,
        *,
        credential: TokenCredential,
        endpoint: str = ARM_ENDPOINT,
        ca_bundle: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wait_budget_seconds: float = 120.0,
        poll_interval: float = 5.0,
        timeout_seconds: float = 30.0,
    ) -> None:
        """Talk to ``endpoint`` with tokens from ``credential`` (scope ``{endpoint}/.default``).

        ``ca_bundle`` trusts a loopback fake's TLS CA; ``sleep`` is how the client waits between polls.
        """
        self.endpoint = endpoint.rstrip("/")
        self.requests_sent = 0
        self._credential = credential
        self._ca_bundle = ca_bundle
        self._sleep = sleep
        self._budget = wait_budget_seconds
        self._poll_interval = poll_interval
        self._timeout = timeout_seconds
        self._host = (urlsplit(self.endpoint).hostname or "").lower(), urlsplit(self.endpoint).port
        self._client: PipelineClient[Any, Any] | None = None
        self._lock = threading.Lock()

    def get(self, path: str, *, api_version: str, role: str) -> dict[str, Any]:
        """GET a resource (``path`` is its ARM id, or an id plus a sub-path).

        Raises:
            PermanentError, RetryableError: as ``send``.
        """
        return self.send("GET", path, api_version=api_version, role=role).body

    def get_link(self, url: str, *, role: str) -> dict[str, Any]:
        """GET a full URL ARM handed out (a list's ``nextLink``), which must be on the ARM endpoint's host.

        Raises:
            PermanentError, RetryableError: as ``send``.
        """
        return self._request("GET", self._poll_url(url), role=role, budget=_Budget(self._budget)).body

    def send(
        self,
        method: str,
        path: str,
        *,
        api_version: str,
        role: str,
        body: Mapping[str, object] | None = None,
    ) -> ArmResponse:
        """Send one operation and, when ARM answers that it runs on, wait for its end.

        ``role`` names what the identity needs for this call ("Network Contributor on the gateway"); it goes
        into the error when ARM answers 403.

        Raises:
            RetryableError: 409 (another operation runs; reason ``arm_conflict``), throttling past the budget
                (``ThrottledError``), 5xx (``arm_unavailable``), an operation still running when the budget is
                spent (``arm_operation_timeout``), one that failed transiently, or ARM unreachable.
            PermanentError: 404 (``arm_not_found``), 403 (``arm_authorization_failed``), 401
                (``arm_unauthenticated``), another 4xx (``arm_rejected``), an operation that failed
                (``arm_operation_failed``), a redirect or a poll URL off the ARM host (``arm_redirect_refused``),
                ARM's TLS certificate not trusted (``arm_tls_untrusted``).
        """
        budget = _Budget(self._budget)
        url = self._url(path, api_version)
        first = self._request(method, url, body=body, role=role, budget=budget)
        headers = first.headers
        if "azure-asyncoperation" in headers:
            self._wait_async_operation(headers["azure-asyncoperation"], first, role=role, budget=budget)
            if method in ("PUT", "PATCH"):
                return self._request("GET", url, role=role, budget=budget)
            if "location" in headers:
                return self._request("GET", self._poll_url(headers["location"]), role=role, budget=budget)
            return ArmResponse(200, {}, {})
        if first.status == 202 and "location" in headers:
            return self._wait_location(headers["location"], first, role=role, budget=budget)
        if method == "PUT" and _state(first.body) not in _TERMINAL and _state(first.body):
            return self._wait_provisioning(url, first, role=role, budget=budget)
        return first

    # --- polling -----------------------------------------------------------------------------------------------

    def _wait_async_operation(self, raw_url: str, previous: ArmResponse, *, role: str, budget: _Budget) -> None:
        url = self._poll_url(raw_url)
        while True:
            self._wait(previous, budget, what="the asynchronous operation")
            previous = self._request("GET", url, role=role, budget=budget)
            status = str(previous.body.get("status", "")).lower()
            if status == "succeeded":
                return
            if status in _TERMINAL:
                raise _operation_failed(previous.body, status)

    def _wait_location(self, raw_url: str, previous: ArmResponse, *, role: str, budget: _Budget) -> ArmResponse:
        url = self._poll_url(raw_url)
        while previous.status == 202:
            self._wait(previous, budget, what="the operation")
            previous = self._request("GET", url, role=role, budget=budget)
        return previous

    def _wait_provisioning(self, url: str, previous: ArmResponse, *, role: str, budget: _Budget) -> ArmResponse:
        while _state(previous.body) not in _TERMINAL:
            self._wait(previous, budget, what="the resource's provisioning")
            previous = self._request("GET", url, role=role, budget=budget)
        state = _state(previous.body)
        if state != "succeeded":
            raise _operation_failed(previous.body, state)
        return previous

    def _wait(self, previous: ArmResponse, budget: _Budget, *, what: str) -> None:
        delay = _retry_after(previous.headers)
        delay = self._poll_interval if delay is None else delay
        if not budget.spend(delay):
            raise RetryableError(
                f"ARM: {what} was still running after {self._budget:g}s; the next attempt looks again",
                reason="arm_operation_timeout",
                retry_after=delay,
            )
        self._sleep(delay)

    def _poll_url(self, raw: str) -> str:
        parts = urlsplit(raw)
        if parts.scheme != "https" or ((parts.hostname or "").lower(), parts.port) != self._host:
            raise PermanentError(
                f"ARM answered a poll URL on another host ({parts.hostname}); the token is never sent there",
                reason="arm_redirect_refused",
            )
        return raw

    # --- one request -------------------------------------------------------------------------------------------

    def _url(self, path: str, api_version: str) -> str:
        if not path.startswith("/"):
            raise PermanentError(f"not an ARM resource path: {path[:80]!r}", reason="arm_rejected")
        return f"{self.endpoint}{path}?api-version={api_version}"

    def _request(
        self,
        method: str,
        url: str,
        *,
        role: str,
        budget: _Budget,
        body: Mapping[str, object] | None = None,
    ) -> ArmResponse:
        """Send one request, retrying 429 and 5xx in place while the budget lasts."""
        for attempt in range(1, _IN_PLACE_ATTEMPTS + 1):
            answer = self._send_once(method, url, body)
            status = answer.status
            if status < 300:
                return answer
            if 300 <= status < 400:
                raise PermanentError(
                    f"ARM answered {method} with a redirect (HTTP {status}); the token never follows it",
                    reason="arm_redirect_refused",
                )
            code, message = _error_of(answer.body)
            text = f"ARM {method} {_resource_path(url)}: HTTP {status} {code} {message}".rstrip()
            retry_after = _retry_after(answer.headers)
            if status == 429 or status >= 500:
                delay = retry_after if retry_after is not None else min(2.0**attempt, 30.0)
                if attempt < _IN_PLACE_ATTEMPTS and budget.spend(delay):
                    logger.info("ARM answered HTTP %s; retrying in %.1fs (attempt %d)", status, delay, attempt)
                    self._sleep(delay)
                    continue
                if status == 429:
                    raise ThrottledError(text, retry_after=retry_after)
                raise RetryableError(text, reason="arm_unavailable", retry_after=retry_after)
            if status == 409:
                raise RetryableError(text, reason="arm_conflict", retry_after=retry_after)
            if status == 404:
                raise PermanentError(text, reason="arm_not_found")
            if status == 403:
                raise PermanentError(f"{text} (the app's identity needs {role})", reason="arm_authorization_failed")
            if status == 401:
                raise PermanentError(text, reason="arm_unauthenticated")
            raise PermanentError(text, reason="arm_rejected")
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _send_once(self, method: str, url: str, body: Mapping[str, object] | None) -> ArmResponse:
        from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
        from azure.core.rest import HttpRequest

        request = HttpRequest(method, url, json=dict(body) if body is not None else None)
        if body is None and method in ("POST", "PUT", "PATCH"):
            request.headers["Content-Length"] = "0"
        request.headers["Accept"] = "application/json"
        with self._lock:
            self.requests_sent += 1
        try:
            response = self._pipeline().send_request(request, stream=False, connection_timeout=self._timeout)
        except ClientAuthenticationError as exc:
            raise PermanentError(
                "no Azure credential could get an ARM token (is the managed identity enabled?)",
                reason="arm_credential_unavailable",
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            if "CERTIFICATE_VERIFY_FAILED" in repr(exc) or "certificate verify failed" in str(exc):
                raise PermanentError(
                    f"ARM's TLS certificate at {urlsplit(url).hostname} does not verify", reason="arm_tls_untrusted"
                ) from exc
            raise RetryableError(f"ARM is unreachable for {method}", reason="arm_unreachable") from exc
        content = response.content
        try:
            parsed = json.loads(content) if content else {}
        except ValueError:
            parsed = {}
        headers = {name.lower(): value for name, value in response.headers.items()}
        return ArmResponse(response.status_code, parsed if isinstance(parsed, dict) else {}, headers)

    def _pipeline(self) -> PipelineClient[Any, Any]:
        if self._client is None:
            from azure.core import PipelineClient
            from azure.core.pipeline.policies import HeadersPolicy, UserAgentPolicy
            from azure.core.pipeline.transport import RequestsTransport
            from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

            # No RedirectPolicy and no RetryPolicy: a token never follows a Location, and retries are ours.
            policies = [
                HeadersPolicy(),
                UserAgentPolicy(sdk_moniker="renewal-app"),
                ARMChallengeAuthenticationPolicy(self._credential, f"{self.endpoint}/.default"),
            ]
            transport = RequestsTransport(connection_verify=self._ca_bundle or True, read_timeout=self._timeout)
            self._client = PipelineClient(self.endpoint, policies=policies, transport=transport)
        return self._client


class _Budget:
    """Seconds of waiting left for one operation (counted, not read from a clock)."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds

    def spend(self, seconds: float) -> bool:
        if seconds > self.left:
            return False
        self.left -= seconds
        return True


def _state(body: Mapping[str, Any]) -> str:
    properties = body.get("properties")
    state = properties.get("provisioningState") if isinstance(properties, dict) else None
    return str(state).lower() if state else ""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        # ARM sends delta-seconds; an HTTP date here is rare enough to fall back to the default interval.
        return None


def _error_of(body: Mapping[str, Any]) -> tuple[str, str]:
    error = body.get("error")
    if not isinstance(error, dict):
        return "", ""
    code, message = str(error.get("code") or ""), str(error.get("message") or "")
    details = error.get("details")
    if isinstance(details, list):
        inner = [str(d.get("code")) for d in details if isinstance(d, dict) and d.get("code")]
        if inner:
            message = f"{message} [{', '.join(inner[:3])}]"
    return code, message[:_MESSAGE_LIMIT]


def _operation_failed(body: Mapping[str, Any], status: str) -> PermanentError | RetryableError:
    code, message = _error_of(body)
    text = f"ARM operation {status}: {code} {message}".rstrip()
    if status in ("canceled", "cancelled") or code.lower() in _TRANSIENT_CODES:
        return RetryableError(text, reason="arm_operation_failed")
    return PermanentError(text, reason="arm_operation_failed")


def _resource_path(url: str) -> str:
    return urlsplit(url).path
