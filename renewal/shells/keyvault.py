"""The Key Vault shell: the only code that talks to Key Vault, through the real ``azure-keyvault-certificates`` SDK.

A renewal costs three authenticated requests on the happy path (docs/architecture.md §7): read the current version
with its
policy, create the new version (whose answer carries the CSR), merge. Every SDK error is translated here into
``RetryableError`` or ``PermanentError``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import stamina

from renewal._shared.urls import is_loopback_host
from renewal.errors import PermanentError, RetryableError, ThrottledError
from renewal.pure.plan import CertificateState, ListedCertificate
from renewal.pure.tags import RENEWED_BY_TAG
from renewal.shells.pacing import NoPacing, Pacer, vault_key, wait_for_slot

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.keyvault.certificates import CertificateClient, CertificatePolicy

    from renewal.pure.verify import VerifiedCertificate

__all__ = [
    "TAG_PREVIOUS_VERSION",
    "TAG_RENEWED_BY",
    "TAG_RENEWED_WITH_PROFILE",
    "CertificateSnapshot",
    "KeyVaultClients",
    "ListedCertificate",
    "MergedVersion",
    "PendingVersion",
    "RequestCount",
    "StaticTokenCredential",
    "VaultCertificates",
    "is_loopback_url",
]

TAG_RENEWED_BY = RENEWED_BY_TAG
TAG_RENEWED_WITH_PROFILE = "renewal-ca-profile"
TAG_PREVIOUS_VERSION = "renewal-previous-version"

# Waits between attempts of a throttled create or merge. Key Vault counts requests in 10-second windows and a
# 429 "does not count towards the throttle limits", so short steady retries take a slot soon after it frees,
# where exponential waits (1, 2, 4, 8, 16 s) sleep through whole windows; 15 s in all, far below functionTimeout.
# A longer Retry-After from the service always wins.
THROTTLE_DELAYS = (1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)
# The wall-clock bound of one call's throttle retries: the schedule's 15 s of waiting plus room for ten requests.
# A Retry-After longer than this is not slept through inside the invocation: the ThrottledError carries it to
# the journal, whose next attempt honours it.
THROTTLE_TIMEOUT = 30.0

_T = TypeVar("_T")

# Key Vault accepts at most 15 tags on an object ("Property  has invalid value" past that).
_MAX_TAGS = 15


@dataclass(frozen=True, slots=True)
class CertificateSnapshot:
    """The current version of a certificate, as one GET of the latest version returns it.

    Attributes:
        state: what the pure decision needs.
        policy: the SDK's policy object, carried over into the new version.
        certificate_der: the current version's certificate (public), or ``None`` for a pending placeholder.
    """

    state: CertificateState
    policy: CertificatePolicy | None = field(repr=False, default=None)
    certificate_der: bytes | None = field(repr=False, default=None)


@dataclass(frozen=True, slots=True)
class PendingVersion:
    """A new version that Key Vault has begun: its key lives in Key Vault, its CSR is here.

    Attributes:
        certificate_name: the certificate's name.
        csr_der: the CSR Key Vault generated, DER.
        request_id: Key Vault's id of the pending operation.
        tags: the tags the pending version carries (they hold the previous version and the CA profile).
        resumed: True when an operation already under way was reused instead of begun.
    """

    certificate_name: str
    csr_der: bytes
    request_id: str | None
    tags: Mapping[str, str]
    resumed: bool


@dataclass(frozen=True, slots=True)
class MergedVersion:
    """The version that a merge created.

    Attributes:
        version: the new version's id (32 hex characters).
        certificate_id: the new version's certificate URI.
        secret_id: the URI consumers read the certificate and key from.
        not_before: as Key Vault recorded it.
        expires_on: as Key Vault recorded it.
    """

    version: str
    certificate_id: str
    secret_id: str
    not_before: datetime | None
    expires_on: datetime | None


class StaticTokenCredential:
    """A credential that always returns one bearer token: for the local emulator only.

    ``KeyVaultClients`` refuses it for any vault that is not on loopback, so a token meant for a local
    emulator can never be sent to a real vault.
    """

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken(self._token, int(datetime.now().timestamp()) + 3600)

    def __repr__(self) -> str:
        return "StaticTokenCredential(<redacted>)"


def is_loopback_url(url: str) -> bool:
    """Tell whether a URL points at this machine (127.0.0.0/8, ::1 or localhost)."""
    return is_loopback_host(urlsplit(url).hostname or "")


class RequestCount:
    """The HTTP requests sent to Key Vault (every attempt: challenge probes and SDK retries included)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests = 0

    @property
    def requests(self) -> int:
        """How many requests were sent so far."""
        return self._requests

    def add(self) -> None:
        """Count one request."""
        with self._lock:
            self._requests += 1


class KeyVaultClients:
    """One ``CertificateClient`` per vault, created on first use and reused (Key Vault's throttling guidance).

    Args:
        credential: a ``TokenCredential``; ``None`` means ``DefaultAzureCredential`` (managed identity in Azure),
            created on first use.
        connection_verify: a CA bundle path for TLS (the local emulator's), or ``None`` for the system store.
        retry_total: the SDK's retry budget per request; its retry policy honours ``Retry-After`` on 429.
        pacer: hands out each vault's certificate-create slots (``renewal.shells.pacing``); ``None`` paces
            nothing, leaving Key Vault's 429 to the throttle retries.
        pacing_wait_seconds: the longest a create waits for its slot; further away it is deferred
            (``ThrottledError`` with ``retry_after``).
        sleep: how a create waits for its slot (injected in tests).

    Attributes:
        sent: every HTTP request sent to any vault, counted as the SDK sends it.
    """

    def __init__(
        self,
        *,
        credential: TokenCredential | StaticTokenCredential | None = None,
        connection_verify: str | None = None,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.8,
        retry_backoff_max: float = 30.0,
        throttle_delays: tuple[float, ...] = THROTTLE_DELAYS,
        timeout_seconds: float = 30.0,
        pacer: Pacer | None = None,
        pacing_wait_seconds: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credential = credential
        self._pacer = pacer
        self._pacing_wait = pacing_wait_seconds
        self._sleep = sleep
        self.sent = RequestCount()
        self._timeout = timeout_seconds
        self._throttle_delays = throttle_delays
        self._connection_verify = connection_verify
        self._retry = {
            "retry_total": retry_total,
            "retry_backoff_factor": retry_backoff_factor,
            "retry_backoff_max": retry_backoff_max,
        }
        self._clients: dict[str, CertificateClient] = {}
        self._lock = threading.Lock()

    def client_for(self, vault_url: str) -> CertificateClient:
        """Return the vault's client, creating it once.

        Raises:
            PermanentError: a static (development) token is configured for a vault that is not on loopback.
        """
        key = vault_url.rstrip("/").lower()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._create(vault_url.rstrip("/"))
                self._clients[key] = client
            return client

    def vault(self, vault_url: str) -> VaultCertificates:
        """Return the certificates shell for one vault."""
        return VaultCertificates(
            self.client_for(vault_url),
            throttle_delays=self._throttle_delays,
            pacer=self._pacer,
            pacing_wait_seconds=self._pacing_wait,
            sleep=self._sleep,
        )

    def _count_request(self, request: Any) -> None:
        self.sent.add()

    def _create(self, vault_url: str) -> CertificateClient:
        from azure.keyvault.certificates import CertificateClient

        credential = self._credential
        static = isinstance(credential, StaticTokenCredential)
        loopback = is_loopback_url(vault_url)
        if static and not loopback:
            raise PermanentError(
                f"a static development token may only be used with a vault on loopback, not {vault_url}",
                reason="bad_configuration",
            )
        if loopback and not static:
            # A loopback vault is the development emulator; a real identity's token is never handed to it.
            raise PermanentError(
                f"a vault on loopback ({vault_url}) is only for the emulator with RENEWAL_KEYVAULT_STATIC_TOKEN; "
                "a real credential is not sent to it",
                reason="bad_configuration",
            )
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = self._credential = DefaultAzureCredential()
        kwargs: dict[str, Any] = {
            **self._retry,
            "connection_timeout": self._timeout,
            "read_timeout": self._timeout,
            # azure-core follows redirects by default; the token must stay with the vault's own host.
            "permit_redirects": False,
            # Azure-core's custom hook runs after the challenge policy: it sees each request as it is sent.
            "raw_request_hook": self._count_request,
        }
        if static:
            # Only with the emulator's static token (loopback, checked above): the challenge names resource
            # vault.azure.net, which a loopback host can never match. A real credential keeps the check, so a
            # token is only requested for the vault's own domain.
            kwargs["verify_challenge_resource"] = False
        if self._connection_verify:
            kwargs["connection_verify"] = self._connection_verify
        return CertificateClient(vault_url=vault_url, credential=credential, **kwargs)


class ThrottleWaits:
    """stamina's ``on`` hook for one throttled call: a new one per call, as it counts that call's retries.

    stamina's own waits grow exponentially (``wait_initial * wait_exp_base ** n``), which cannot give the steady
    ``THROTTLE_DELAYS``; a hook that returns a number sets the next wait itself. It retries ``ThrottledError``
    only: after the next of ``delays`` (the last one repeats), or after the error's ``retry_after`` when that is
    longer. A ``retry_after`` longer than ``longest`` is declined, so the error reaches the caller with it.
    """

    def __init__(self, delays: Sequence[float] = THROTTLE_DELAYS, *, longest: float = THROTTLE_TIMEOUT) -> None:
        if not delays:
            raise ValueError("delays must not be empty")
        self._delays = tuple(delays)
        self._longest = longest
        self._retries = 0

    def __call__(self, exc: Exception) -> bool | float:
        """The wait before retrying after ``exc``, or ``False`` when ``exc`` is not to be retried here."""
        if not isinstance(exc, ThrottledError):
            return False
        asked = exc.retry_after or 0.0
        if asked > self._longest:
            return False
        delay = self._delays[min(self._retries, len(self._delays) - 1)]
        self._retries += 1
        return max(delay, asked)


class VaultCertificates:
    """Certificate operations of one vault, in the renewal's words.

    Args:
        client: the vault's SDK client.
        throttle_delays: waits between attempts of a throttled create or merge.
        pacer: hands out the vault's create slots (``None``: no pacing); keyed by the vault's host.
        pacing_wait_seconds: the longest a create waits for its slot before it is deferred.
        sleep: how a create waits for its slot.
    """

    def __init__(
        self,
        client: CertificateClient,
        *,
        throttle_delays: tuple[float, ...] = THROTTLE_DELAYS,
        pacer: Pacer | None = None,
        pacing_wait_seconds: float = 15.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._throttle_delays = throttle_delays
        self._pacer: Pacer = pacer or NoPacing()
        self._pacing_wait = pacing_wait_seconds
        self._sleep = sleep

    def _unthrottled(self, call: Callable[[], _T]) -> _T:
        """Run ``call``, retrying the Key Vault 429s it raised as ``ThrottledError`` (one stamina policy).

        azure-core retries a POST's 429 only when it carries ``Retry-After``, and whether Key Vault sends one is
        not confirmed; a 429 "is not processed" and does not count (Key Vault throttling guidance), so creating
        or merging again is safe. Waits follow ``ThrottleWaits``: one more attempt than there are delays, within
        ``THROTTLE_TIMEOUT``; then the last ``ThrottledError`` is raised.
        """
        delays = self._throttle_delays
        for attempt in stamina.retry_context(
            on=ThrottleWaits(delays), attempts=len(delays) + 1, timeout=THROTTLE_TIMEOUT
        ):
            with attempt:
                return call()
        raise AssertionError("unreachable: stamina raises the last error when it stops")

    def read(self, certificate_name: str) -> CertificateSnapshot:
        """Read the latest version with its policy (one request).

        Raises:
            PermanentError: the certificate does not exist (reason ``certificate_not_found``) or access is denied.
            RetryableError: throttling, 5xx or a network failure outlasted the SDK's retries.
        """
        with _translated(f"read certificate {certificate_name}"):
            certificate = self._client.get_certificate(certificate_name)
        policy = certificate.policy
        properties = certificate.properties
        key_usage = tuple(getattr(usage, "value", str(usage)) for usage in (policy.key_usage or ())) if policy else ()
        state = CertificateState(
            name=certificate_name,
            version=properties.version if properties else None,
            issuer_name=policy.issuer_name if policy else None,
            expires_on=properties.expires_on if properties and certificate.cer else None,
            has_certificate=bool(certificate.cer),
            tags=dict(properties.tags or {}) if properties else {},
            not_before=properties.not_before if properties and certificate.cer else None,
            created_on=properties.created_on if properties else None,
            validity_months=policy.validity_in_months if policy else None,
            key_usage=key_usage,
            ekus=tuple(policy.enhanced_key_usage or ()) if policy else (),
        )
        return CertificateSnapshot(
            state=state, policy=policy, certificate_der=bytes(certificate.cer) if certificate.cer else None
        )

    def create_version(self, snapshot: CertificateSnapshot, *, tags: Mapping[str, str]) -> PendingVersion:
        """Have Key Vault create a new version with issuer ``Unknown`` and return its CSR (one request).

        The current policy is carried over unchanged but for the issuer, so subject, SANs, key type and size
        or curve, usages, exportability and validity stay as they were; Key Vault generates a new key unless
        the policy says ``reuse_key``. When an operation is already pending, Key Vault answers 409 and the
        pending operation is resumed instead (one more request).

        The create first waits for the vault's next slot from the pacer, so instances together stay under the
        vault's create rate; a slot further away than ``pacing_wait_seconds`` defers the create instead.

        Raises:
            PermanentError: the policy is refused, or the certificate is gone.
            ThrottledError: the vault's create rate is spent for longer than the pacing wait (``retry_after``).
            RetryableError: throttling, 5xx or a network failure outlasted the SDK's retries.
        """
        from azure.core.exceptions import ResourceExistsError

        name = snapshot.state.name
        policy = _unknown_issuer_copy(snapshot.policy)
        wait_for_slot(self._pacer, vault_key(self._client.vault_url), within=self._pacing_wait, sleep=self._sleep)
        try:
            operation = self._unthrottled(lambda: self._create(name, policy, tags))
        except ResourceExistsError:
            # Key Vault answers 409 while an operation is pending: a renewal is already under way; resume it.
            return self.pending_version(name)
        csr = getattr(operation, "csr", None)
        if not csr:
            # An SDK older than 4.11 returned None here; read the operation instead.
            return self.pending_version(name, resumed=False)
        return PendingVersion(
            certificate_name=name,
            csr_der=bytes(csr),
            request_id=getattr(operation, "request_id", None),
            tags=dict(tags),
            resumed=False,
        )

    def _create(self, name: str, policy: CertificatePolicy, tags: Mapping[str, str]) -> Any:
        from azure.core.exceptions import ResourceExistsError

        with _translated(f"create a new version of {name}", passthrough=(ResourceExistsError,)):
            return self._client.begin_create_certificate(name, policy, tags=_bounded_tags(tags)).result()

    def pending_version(self, certificate_name: str, *, resumed: bool = True) -> PendingVersion:
        """Read the pending operation of a renewal already under way, and the tags of its placeholder.

        Raises:
            PermanentError: there is no pending operation (reason ``no_pending_operation``), or it is not
                waiting for a merge (reason ``pending_operation_not_mergeable``).
            RetryableError: throttling, 5xx or a network failure outlasted the SDK's retries.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with _translated(f"read the pending operation of {certificate_name}", passthrough=(ResourceNotFoundError,)):
                operation = self._client.get_certificate_operation(certificate_name)
        except ResourceNotFoundError as exc:
            raise PermanentError(
                f"certificate {certificate_name} has no pending operation", reason="no_pending_operation"
            ) from exc
        if (operation.status or "").lower() != "inprogress" or not operation.csr:
            raise PermanentError(
                f"the pending operation of {certificate_name} is {operation.status}, not waiting for a merge",
                reason="pending_operation_not_mergeable",
            )
        return PendingVersion(
            certificate_name=certificate_name,
            csr_der=bytes(operation.csr),
            request_id=operation.request_id,
            tags={},
            resumed=resumed,
        )

    def merge(self, certificate_name: str, verified: VerifiedCertificate, *, tags: Mapping[str, str]) -> MergedVersion:
        """Merge the verified leaf and its chain into the pending operation (one request).

        Raises:
            PermanentError: Key Vault refused the certificate (for example its key does not match), or no
                operation is pending.
            RetryableError: throttling, 5xx or a network failure outlasted the SDK's retries.
        """

        def merge() -> Any:
            with _translated(f"merge the new version of {certificate_name}"):
                return self._client.merge_certificate(
                    certificate_name,
                    [verified.leaf_der, *verified.chain_der],
                    tags=_bounded_tags(tags),
                )

        merged = self._unthrottled(merge)
        properties = merged.properties
        if properties is None or not properties.version:
            raise RetryableError(
                f"Key Vault's answer to the merge of {certificate_name} names no version", reason="keyvault_garbled"
            )
        return MergedVersion(
            version=properties.version,
            certificate_id=merged.id or "",
            secret_id=merged.secret_id or "",
            not_before=properties.not_before,
            expires_on=properties.expires_on,
        )

    def read_version_der(self, certificate_name: str, version: str) -> bytes | None:
        """Read one version's certificate, DER (one request); ``None`` when that version holds none or is gone.

        Raises:
            PermanentError: access is denied, or Key Vault refused the request.
            RetryableError: throttling, 5xx or a network failure outlasted the SDK's retries.
        """
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with _translated(
                f"read version {version[:40]} of {certificate_name}", passthrough=(ResourceNotFoundError,)
            ):
                certificate = self._client.get_certificate_version(certificate_name, version)
        except ResourceNotFoundError:
            return None
        return bytes(certificate.cer) if certificate.cer else None

    def list_certificate_properties(self) -> list[ListedCertificate]:
        """The vault's enabled certificates with their validity and tags (pending-only ones are left out).

        Raises:
            RetryableError / PermanentError: as for ``read``.
        """
        listed = []
        with _translated("list certificates"):
            for item in self._client.list_properties_of_certificates():
                if item.name and item.enabled is not False:
                    listed.append(
                        ListedCertificate(
                            name=item.name,
                            tags=dict(item.tags or {}),
                            not_before=item.not_before,
                            expires_on=item.expires_on,
                        )
                    )
        return listed


def _unknown_issuer_copy(policy: CertificatePolicy | None) -> CertificatePolicy:
    from azure.keyvault.certificates import CertificatePolicy

    if policy is None:
        raise PermanentError("the certificate has no policy to renew with", reason="policy_missing")
    return CertificatePolicy(
        issuer_name="Unknown",
        subject=policy.subject,
        san_emails=policy.san_emails,
        san_dns_names=policy.san_dns_names,
        san_user_principal_names=policy.san_user_principal_names,
        san_ip_addresses=policy.san_ip_addresses,
        san_uris=policy.san_uris,
        exportable=policy.exportable,
        key_type=policy.key_type,
        key_size=policy.key_size,
        reuse_key=policy.reuse_key,
        key_curve_name=policy.key_curve_name,
        enhanced_key_usage=policy.enhanced_key_usage,
        key_usage=policy.key_usage,
        content_type=policy.content_type,
        validity_in_months=policy.validity_in_months,
        lifetime_actions=policy.lifetime_actions,
        certificate_type=policy.certificate_type,
        certificate_transparency=policy.certificate_transparency,
    )


def _bounded_tags(tags: Mapping[str, str]) -> dict[str, str]:
    if len(tags) > _MAX_TAGS:
        raise PermanentError(
            f"the new version would carry {len(tags)} tags; Key Vault allows {_MAX_TAGS}", reason="too_many_tags"
        )
    return dict(tags)


@contextmanager
def _translated(action: str, *, passthrough: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Turn SDK and transport errors into ``RetryableError`` / ``PermanentError`` with a safe message."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        DecodeError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except passthrough:
        raise
    except ResourceNotFoundError as exc:
        raise PermanentError(
            f"Key Vault could not {action}: {_service_message(exc)}", reason="certificate_not_found"
        ) from exc
    except ClientAuthenticationError as exc:
        raise PermanentError(
            f"Key Vault refused to {action}: {_service_message(exc)}", reason="keyvault_access_denied"
        ) from exc
    except DecodeError as exc:
        raise RetryableError(f"Key Vault's answer to {action} was not JSON", reason="keyvault_garbled") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        if 300 <= status < 400:
            from renewal._shared.http import redirect_refused

            headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
            base = getattr(getattr(exc.response, "request", None), "url", None)
            location = headers.get("Location")
            raise redirect_refused(
                f"Key Vault, asked to {action},", status, location, base or "", reason="keyvault_redirect_refused"
            ) from exc
        message = f"Key Vault could not {action}: HTTP {status} {_service_message(exc)}"
        if status == 429:
            raise ThrottledError(message, reason="keyvault_throttled", retry_after=_retry_after(exc)) from exc
        if status >= 500 or status == 408:
            raise RetryableError(message, reason="keyvault_unavailable", retry_after=_retry_after(exc)) from exc
        if status == 403:
            raise PermanentError(message, reason="keyvault_access_denied") from exc
        raise PermanentError(message, reason="keyvault_rejected") from exc
    except ValueError as exc:
        if not _raised_by_challenge_policy(exc):
            raise _garbled(action, exc) from exc
        # The 401 challenge names a resource whose domain is not the vault's (a wrong vault URL, or a host
        # posing as a vault): the SDK refuses it before asking the credential for a token; so do we, for good.
        raise PermanentError(
            f"Key Vault's authentication challenge to {action} names a resource outside the vault's domain; "
            "no token was requested or sent (check the vault URL)",
            reason="keyvault_challenge_refused",
        ) from exc
    except (TypeError, AttributeError, KeyError) as exc:
        raise _garbled(action, exc) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        from renewal._shared.http import tls_verification_failed
        from renewal._shared.urls import host_of

        if tls_verification_failed(exc):
            raise PermanentError(
                f"Key Vault's TLS certificate at {host_of(_requested_url(exc))} is not trusted or not issued for "
                f"that host name; could not {action} (check the vault URL and RENEWAL_KEYVAULT_CA_BUNDLE)",
                reason="keyvault_tls_untrusted",
            ) from exc
        raise RetryableError(
            f"Key Vault could not be reached to {action}: {type(exc).__name__}", reason="keyvault_unreachable"
        ) from exc


def _garbled(action: str, exc: BaseException) -> RetryableError:
    # The SDK's models raise ValueError, TypeError, AttributeError or KeyError on an answer that lacks what Key
    # Vault always sends (an id, a policy): a garbled answer, from a proxy or a fault, which a later attempt may
    # not repeat.
    return RetryableError(
        f"Key Vault's answer to {action} was malformed ({type(exc).__name__})", reason="keyvault_garbled"
    )


def _raised_by_challenge_policy(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside azure-keyvault's ``challenge_auth_policy`` (its resource check)."""
    # _validate_challenge_resource raises a plain ValueError; where it was raised is what tells it apart.
    traceback = exc.__traceback__
    while traceback is not None and traceback.tb_next is not None:
        traceback = traceback.tb_next
    module = traceback.tb_frame.f_globals.get("__name__", "") if traceback is not None else ""
    return isinstance(module, str) and module.endswith("._shared.challenge_auth_policy")


def _requested_url(exc: BaseException) -> str | None:
    """The URL of the request a transport error is about, from the ``requests`` error azure-core wraps."""
    inner = getattr(exc, "inner_exception", None) or exc.__cause__
    request = getattr(inner, "request", None)
    url = getattr(request, "url", None)
    return url if isinstance(url, str) else None


def _service_message(exc: Any) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"({code}) {message}"
    return type(exc).__name__


def _retry_after(exc: Any) -> float | None:
    from renewal._shared.http import parse_retry_after

    response = getattr(exc, "response", None)
    headers: Mapping[str, str] = getattr(response, "headers", None) or {}
    # azure-core's headers ignore case; a plain mapping does not.
    value = headers.get("Retry-After") or headers.get("retry-after")
    return parse_retry_after(value, now=datetime.now(UTC))
