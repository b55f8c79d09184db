"""The vault model: Key Vault's certificates REST API as the real service speaks it, behind the ``ApiRequest`` seam.

The HTTPS shell authenticates a request and hands it to :meth:`Vault.handle`, which never raises and answers with
the status codes, JSON shapes, error codes and messages of the real service
(``/work/shared/reference/keyvault-certificates-protocol.md``, "the reference", and the recordings beside it).

Where the real behaviour is not recorded, the choice made here is written down where it is made ("Guess:").
"""

from __future__ import annotations

import base64
import binascii
import calendar
import copy
import datetime as dt
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding

from devstack.keyvault import _crypto
from devstack.keyvault._types import (
    CERTIFICATE_EXPIRED,
    CERTIFICATE_NEAR_EXPIRY,
    CERTIFICATE_NEW_VERSION_CREATED,
    ApiRequest,
    ApiResponse,
    Clock,
    EmitEvent,
    LatestWhilePending,
    VaultEvent,
)

__all__ = ["OPERATIONS", "Vault"]

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

OPERATIONS = (
    "create",
    "get",
    "get_version",
    "update",
    "list",
    "list_versions",
    "get_policy",
    "update_policy",
    "get_operation",
    "update_operation",
    "delete_operation",
    "merge",
    "import",
    "delete",
    "list_deleted",
    "get_deleted",
    "recover",
    "purge",
    "get_secret",
    "backup",
    "restore",
    "issuers",
    "contacts",
    "unknown",
)

_NAME = re.compile(r"^[0-9a-zA-Z-]+$")
_IN_PROGRESS = "inProgress"
_COMPLETED = "completed"
_CANCELLED = "cancelled"
_PKCS12 = "application/x-pkcs12"
_PEM = "application/x-pem-file"
_RECOVERY_LEVEL = "Recoverable+Purgeable"
_RECOVERABLE_DAYS = 90
_DAY = 86400
_NEAR_EXPIRY_WINDOW = 30 * _DAY
_SNAPSHOT_FORMAT = 1

# Verbatim from the recordings (python-assets merge; cpp/rust Self create).
_DETAILS_UNKNOWN = "Pending certificate created. Please Perform Merge to complete the request."
_DETAILS_ISSUER = (
    "Pending certificate created. Certificate request is in progress. This may take some time based on the issuer "
    "provider. Please check again later."
)
_MSG_NOT_FOUND = (
    "A certificate with (name/id) {} was not found in this key vault. If you recently deleted this certificate you "
    "may be able to recover it using the correct recovery command. For help resolving this issue, please see "
    "https://go.microsoft.com/fwlink/?linkid=2125182"
)
_MSG_CONFLICT = (
    "A new key vault certificate can not be created or imported while a pending key vault certificate's status is "
    "inProgress."
)
_MSG_BAD_DN = "Property policy.x509_props has invalid value. Invalid X.500 distinguished name\r\n"
_MSG_KEY_MISMATCH = (
    "The public key of the end-entity certificate in the specified X.509 certificate content does not match the "
    "public part of the specified private key. Please check if certificate is valid."
)
_DEFAULT_EKUS = ("1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2")
_DEFAULT_KEY_USAGE = ("digitalSignature", "keyEncipherment")
_KEY_USAGE_BY_LOWER = {usage.lower(): usage for usage in _crypto.CERTIFICATE_KEY_USAGES}


class _KvError(Exception):
    """An answer in Key Vault's error shape; raised inside handlers, turned into a response by ``handle``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> _KvError:
    return _KvError(400, "BadParameter", message)


def _not_found(name: str) -> _KvError:
    return _KvError(404, "CertificateNotFound", _MSG_NOT_FOUND.format(name))


def _pending_not_found(name: str) -> _KvError:
    return _KvError(404, "PendingCertificateNotFound", f"Pending Certificate not found: {name}")


def _deleted_not_found(name: str) -> _KvError:
    return _KvError(404, "CertificateNotFound", f"Deleted Certificate not found: {name}")


@dataclass(frozen=True, slots=True)
class _Version:
    """One version of a certificate; a placeholder (pending, disabled) has no ``cer``.

    Attributes:
        version: 32 lowercase hex characters.
        created: Unix seconds.
        updated: Unix seconds.
        enabled: ``attributes.enabled``.
        nbf: not-before, Unix seconds (from the certificate, or planned for a placeholder).
        exp: expiry, Unix seconds.
        tags: the version's tags, ``None`` when never set (then ``tags`` is left out of bundles).
        cer: the leaf DER, ``None`` for a placeholder.
        chain: DER of the certificates merged or imported with the leaf.
        key_pem: the private key as PKCS#8 PEM.
        content_type: the secret content type fixed when the version was made.
    """

    version: str
    created: int
    updated: int
    enabled: bool
    nbf: int
    exp: int
    tags: Mapping[str, str] | None
    cer: bytes | None
    chain: tuple[bytes, ...]
    key_pem: str | None
    content_type: str


@dataclass(frozen=True, slots=True)
class _Operation:
    """The pending certificate operation (``/certificates/{name}/pending``).

    Attributes:
        request_id: 32 hex characters.
        issuer_name: the policy's issuer name, as the op shows it.
        csr: the DER PKCS#10.
        key_pem: the key the CSR was signed with.
        status: ``inProgress``, ``completed`` or ``cancelled``.
        cancellation_requested: whether a cancel was requested.
        enabled: ``attributes.enabled`` for the version a merge will make.
        preserve_cert_order: ``preserveCertOrder`` as given on create, if it was.
    """

    request_id: str
    issuer_name: str
    csr: bytes
    key_pem: str
    status: str
    cancellation_requested: bool = False
    enabled: bool = True
    preserve_cert_order: bool | None = None


@dataclass(slots=True)
class _Certificate:
    """All the state of one certificate name (mutable; guarded by the vault's lock)."""

    name: str
    policy: JSON
    versions: list[_Version] = field(default_factory=list)
    placeholder: _Version | None = None
    operation: _Operation | None = None
    emitted: set[tuple[str, str]] = field(default_factory=set)
    deleted_date: int | None = None


@dataclass(frozen=True, slots=True)
class _Route:
    operation: str
    handler: Callable[[ApiRequest, list[str]], ApiResponse]
    args: list[str]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _add_months(timestamp: int, months: int) -> int:
    start = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return int(start.replace(year=year, month=month, day=day).timestamp())


def _object(value: object, path: str) -> JSON | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad(f"Property {path} has invalid value. Expected a JSON object.")
    return value


def _string_list(value: object, path: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _bad(f"Property {path} has invalid value. Expected an array of strings.")
    return list(value)


def _boolean(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"Property {path} has invalid value. Expected true or false.")
    return value


def _integer(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(f"Property {path} has invalid value. Expected an integer.")
    return value


def _tags(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _bad("Property tags has invalid value. Expected an object of string values.")
    if len(value) > 15:
        # Key Vault allows 15 tags ("Property  has invalid value" for more, per a terraform-caf issue).
        raise _bad("Property tags has invalid value. At most 15 tags are allowed.")
    return dict(value)


def _enabled_in(attributes: object) -> bool | None:
    attrs = _object(attributes, "attributes")
    if attrs is None or attrs.get("enabled") is None:
        return None
    return _boolean(attrs["enabled"], "attributes.enabled")


def _normalise_key_usage(values: list[str]) -> list[str]:
    normalised = set()
    for usage in values:
        canonical = _KEY_USAGE_BY_LOWER.get(usage.lower())
        if canonical is None:
            raise _bad(f"Property policy.x509_props.key_usage has invalid value {usage}.")
        normalised.add(canonical)
    # Sorted as the service stores it (rec: net, "crlSign" -> "cRLSign", sorted).
    return sorted(normalised, key=str.lower)


def _complete_policy(raw: JSON, *, now: int, created: int | None) -> JSON:
    """Validate a policy and fill the service's defaults (reference §3); member order as recorded.

    Raises:
        _KvError: 400 BadParameter for a malformed or unsupported policy.
    """
    key_in = _object(raw.get("key_props"), "policy.key_props") or {}
    crv = key_in.get("crv")
    kty = key_in.get("kty") or ("EC" if crv else "RSA")
    if kty not in ("RSA", "RSA-HSM", "EC", "EC-HSM"):
        raise _bad(f"Property policy.key_props.kty has invalid value {kty}. Supported: RSA, RSA-HSM, EC, EC-HSM.")
    key_size = key_in.get("key_size")
    if key_size is not None:
        key_size = _integer(key_size, "policy.key_props.key_size")
    key_props: JSON = {
        "exportable": _boolean(key_in.get("exportable", True), "policy.key_props.exportable"),
        "kty": kty,
    }
    if kty.startswith("RSA"):
        key_props["key_size"] = key_size or 2048
        if key_props["key_size"] not in _crypto.RSA_KEY_SIZES:
            raise _bad(f"Property policy.key_props.key_size has invalid value {key_size}. Supported: 2048, 3072, 4096.")
    else:
        by_size = {size: name for name, size in _crypto.CURVE_SIZES.items()}
        crv = crv or by_size.get(key_size or 256)
        if crv not in _crypto.CURVES:
            raise _bad(f"Property policy.key_props.crv has invalid value {crv}. Supported: P-256, P-384, P-521.")
        key_props["key_size"] = _crypto.CURVE_SIZES[crv]
    key_props["reuse_key"] = _boolean(key_in.get("reuse_key", False), "policy.key_props.reuse_key")
    if not kty.startswith("RSA"):
        key_props["crv"] = crv

    secret_in = _object(raw.get("secret_props"), "policy.secret_props") or {}
    content_type = secret_in.get("contentType") or _PKCS12
    if content_type not in (_PKCS12, _PEM):
        raise _bad(f"Property policy.secret_props.contentType has invalid value {content_type}.")

    x509_in = _object(raw.get("x509_props"), "policy.x509_props") or {}
    subject = x509_in.get("subject")
    if subject is None:
        subject = ""
    if not isinstance(subject, str):
        raise _bad(_MSG_BAD_DN)
    try:
        _crypto.parse_subject(subject)
    except ValueError as exc:
        raise _bad(_MSG_BAD_DN) from exc
    x509_props: JSON = {"subject": subject}
    sans_in = _object(x509_in.get("sans"), "policy.x509_props.sans")
    if sans_in is not None:
        sans: JSON = {}
        for member in ("emails", "dns_names", "upns", "uris", "ipAddresses"):
            if sans_in.get(member) is not None:
                sans[member] = _string_list(sans_in[member], f"policy.x509_props.sans.{member}")
        x509_props["sans"] = sans
    if not subject and not any((sans_in or {}).values()):
        raise _bad("Property policy.x509_props has invalid value. A subject or subject alternative names are required.")
    ekus = x509_in.get("ekus")
    x509_props["ekus"] = list(_DEFAULT_EKUS) if ekus is None else _string_list(ekus, "policy.x509_props.ekus")
    for oid in x509_props["ekus"]:
        try:
            x509.ObjectIdentifier(oid)
        except ValueError as exc:
            raise _bad(f"Property policy.x509_props.ekus has invalid value {oid}.") from exc
    usage = x509_in.get("key_usage")
    usage_list = list(_DEFAULT_KEY_USAGE) if usage is None else _string_list(usage, "policy.x509_props.key_usage")
    x509_props["key_usage"] = _normalise_key_usage(usage_list)
    months = _integer(x509_in.get("validity_months", 12), "policy.x509_props.validity_months")
    if not 1 <= months <= 1200:
        raise _bad(f"Property policy.x509_props.validity_months has invalid value {months}.")
    x509_props["validity_months"] = months
    x509_props["basic_constraints"] = {"ca": False}

    issuer_in = _object(raw.get("issuer"), "policy.issuer") or {}
    issuer_name = issuer_in.get("name") or "Unknown"
    if not isinstance(issuer_name, str):
        raise _bad("Property policy.issuer.name has invalid value.")
    issuer: JSON = {"name": issuer_name}
    if issuer_in.get("cty") is not None:
        issuer["cty"] = issuer_in["cty"]
    if issuer_in.get("cert_transparency") is not None:
        issuer["cert_transparency"] = _boolean(issuer_in["cert_transparency"], "policy.issuer.cert_transparency")

    actions = raw.get("lifetime_actions")
    if actions is None:
        # "EmailContacts for issuer Unknown and AutoRenew for Self" (reference §3, rec).
        action_type = "EmailContacts" if issuer_name.lower() == "unknown" else "AutoRenew"
        actions = [{"trigger": {"lifetime_percentage": 80}, "action": {"action_type": action_type}}]
    _validate_lifetime_actions(actions)

    attributes_in = _object(raw.get("attributes"), "policy.attributes") or {}
    enabled = _boolean(attributes_in.get("enabled", True), "policy.attributes.enabled")
    return {
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": copy.deepcopy(actions),
        "issuer": issuer,
        "attributes": {"enabled": enabled, "created": now if created is None else created, "updated": now},
    }


def _validate_lifetime_actions(actions: object) -> None:
    if not isinstance(actions, list):
        raise _bad("Property policy.lifetime_actions has invalid value. Expected an array.")
    for raw_action in actions:
        action = _object(raw_action, "policy.lifetime_actions") or {}
        trigger = _object(action.get("trigger"), "policy.lifetime_actions.trigger")
        what = _object(action.get("action"), "policy.lifetime_actions.action")
        if not trigger or not what or what.get("action_type") not in ("EmailContacts", "AutoRenew"):
            raise _bad("Property policy.lifetime_actions has invalid value.")
        percentage = trigger.get("lifetime_percentage")
        if percentage is not None and not (isinstance(percentage, int) and 1 <= percentage <= 99):
            raise _bad("Property policy.lifetime_actions.trigger.lifetime_percentage has invalid value.")


def _merge_members(stored: JSON, patch: JSON) -> JSON:
    """Apply a PATCH policy: "set specified members … leave others as null" (spec), one level deep."""
    merged = copy.deepcopy(stored)
    for member, value in patch.items():
        if member in ("key_props", "secret_props", "x509_props", "issuer", "attributes") and isinstance(value, dict):
            base = dict(merged.get(member) or {})
            if member == "key_props" and str(value.get("kty", base.get("kty")))[:2] != str(base.get("kty"))[:2]:
                # Switching RSA <-> EC: the stored size and curve belong to the old key type.
                base.pop("key_size", None)
                base.pop("crv", None)
            merged[member] = {**base, **value}
        elif member != "id":
            merged[member] = value
    return merged


def _template(policy: JSON) -> _crypto.CertificateTemplate:
    x509_props = policy["x509_props"]
    sans = x509_props.get("sans", {})
    return _crypto.CertificateTemplate(
        subject=_crypto.parse_subject(x509_props["subject"]),
        dns_names=tuple(sans.get("dns_names", ())),
        emails=tuple(sans.get("emails", ())),
        upns=tuple(sans.get("upns", ())),
        uris=tuple(sans.get("uris", ())),
        ip_addresses=tuple(sans.get("ipAddresses", ())),
        key_usage=tuple(x509_props["key_usage"]),
        ekus=tuple(x509_props["ekus"]),
    )


class Vault:
    """One emulated key vault's certificates (plus their secret view), driven by :meth:`handle`.

    Behaviour chosen where Key Vault's is not recorded:

    * Issuer ``Self`` completes at once: the version exists and every read of the op says ``completed`` with
      ``target``; only the create answer itself says ``inProgress`` (as recorded), because the 4.12 SDK poller
      returns ``None`` from ``begin_create_certificate`` when the first answer is already finished.
    * A ``create`` on an existing certificate without ``policy`` reuses the stored policy (the real service
      requires a policy on the first create; so does this one: 400 BadParameter).
    * A cancel answers the op as the recording shows it (``cancellation_requested: true``, still ``inProgress``);
      the next read shows ``cancelled``. Cancelling an op that is not ``inProgress`` is 403 Forbidden.
    * The placeholder of a pending create is not listed by ``/versions``; ``get latest`` shows it while it is the
      only version, or while a renewal is ``inProgress`` and ``latest_while_pending`` is ``"placeholder"``.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        clock: Clock,
        emit: EmitEvent,
        latest_while_pending: LatestWhilePending = "placeholder",
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._clock = clock
        self._emit = emit
        self._latest_while_pending = latest_while_pending
        self._lock = threading.RLock()
        self._certificates: dict[str, _Certificate] = {}
        self._deleted: dict[str, _Certificate] = {}
        self._issuers: dict[str, JSON] = {}
        self._contacts: list[JSON] | None = None
        self._backup_key = os.urandom(32)

    # ----------------------------------------------------------------------------------------- public API

    def operation_of(self, request: ApiRequest) -> str:
        """Return the stable operation name of a request (one of :data:`OPERATIONS`), for faults, throttling, logs."""
        route = self._route(request)
        return route.operation if route is not None else "unknown"

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Answer one authenticated request as Key Vault would; never raises (a bug becomes a 500 KeyVault error)."""
        try:
            with self._lock:
                route = self._route(request)
                if route is None:
                    return self._unrouted(request)
                return route.handler(request, route.args)
        except _KvError as error:
            return _error(error)
        except Exception:
            logger.exception("vault=%s unexpected error on %s %s", self.name, request.method, request.path)
            return _error(_KvError(500, "InternalServerError", "The emulator failed to process the request."))

    def emit_due_expiry_events(self) -> int:
        """Emit ``CertificateNearExpiry`` / ``CertificateExpired`` for current versions, once per version each.

        A version already past ``exp`` gets only ``CertificateExpired``. Returns how many events were emitted.
        """
        now = int(self._clock())
        due: list[VaultEvent] = []
        with self._lock:
            for certificate in self._certificates.values():
                if not certificate.versions:
                    continue
                current = certificate.versions[-1]
                if now >= current.exp:
                    event_type = CERTIFICATE_EXPIRED
                elif current.exp - now <= _NEAR_EXPIRY_WINDOW:
                    event_type = CERTIFICATE_NEAR_EXPIRY
                else:
                    continue
                if (current.version, event_type) in certificate.emitted:
                    continue
                certificate.emitted.add((current.version, event_type))
                due.append(_event(event_type, certificate.name, current))
        for event in due:
            self._emit(event)
        return len(due)

    def event_for(self, certificate_name: str, event_type: str) -> VaultEvent:
        """Build an event of ``event_type`` about the current version of a certificate, to fire it on demand.

        Raises:
            KeyError: there is no certificate with a completed version of that name.
            ValueError: ``event_type`` is not one of the ``CERTIFICATE_*`` event types.
        """
        if event_type not in (CERTIFICATE_NEW_VERSION_CREATED, CERTIFICATE_NEAR_EXPIRY, CERTIFICATE_EXPIRED):
            raise ValueError(f"unknown event type {event_type!r}")
        with self._lock:
            certificate = self._certificates.get(certificate_name.lower())
            if certificate is None or not certificate.versions:
                raise KeyError(certificate_name)
            return _event(event_type, certificate.name, certificate.versions[-1])

    def private_key_of(self, certificate_name: str, version: str | None = None) -> _crypto.PrivateKey:
        """Return a version's private key (the latest completed one, else the pending one); for tests only.

        Raises:
            KeyError: no such certificate or version.
        """
        with self._lock:
            certificate = self._certificates.get(certificate_name.lower())
            if certificate is None:
                raise KeyError(certificate_name)
            if version is None:
                if certificate.versions:
                    key_pem = certificate.versions[-1].key_pem
                elif certificate.operation is not None:
                    key_pem = certificate.operation.key_pem
                else:
                    key_pem = None
            else:
                found = self._find_version(certificate, version)
                key_pem = found.key_pem if found is not None else None
            if key_pem is None:
                raise KeyError(f"{certificate_name}/{version}")
            return _crypto.key_from_pem(key_pem)

    def seed(
        self,
        name: str,
        *,
        policy: JSON,
        leaf_der: bytes,
        chain_der: Sequence[bytes] = (),
        key_pem: str,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Add a completed version of ``name`` straight into the model, for benchmarks that need thousands of
        certificates fast (emulator only; Key Vault has nothing like it). Returns the new version's id.

        ``policy`` is what a create would take (defaults filled in the same way); the leaf must be for
        ``key_pem``'s key. Unlike a merge, no ``CertificateNewVersionCreated`` is emitted: seeding a fleet must
        not flood the subscribers. Expiry events follow the clock as for any version.

        Raises:
            _KvError: the name or the policy is invalid.
            ValueError: the leaf is not DER, or a pending operation or deleted certificate holds the name.
        """
        _check_name(name)
        leaf = x509.load_der_x509_certificate(leaf_der)
        with self._lock:
            now = self._now()
            certificate = self._certificates.get(name.lower())
            if name.lower() in self._deleted or (certificate is not None and certificate.operation is not None):
                raise ValueError(f"certificate {name} is deleted or has an operation; it cannot be seeded")
            completed = _complete_policy(policy, now=now, created=None)
            if certificate is None:
                certificate = self._certificates[name.lower()] = _Certificate(name=name, policy=completed)
            certificate.versions.append(
                _Version(
                    version=_new_version_id(),
                    created=now,
                    updated=now,
                    enabled=True,
                    nbf=int(leaf.not_valid_before_utc.timestamp()),
                    exp=int(leaf.not_valid_after_utc.timestamp()),
                    tags=dict(tags) if tags is not None else None,
                    cer=leaf_der,
                    chain=tuple(chain_der),
                    key_pem=key_pem,
                    content_type=completed["secret_props"]["contentType"],
                )
            )
            return certificate.versions[-1].version

    def snapshot(self) -> dict[str, object]:
        """Return the full state as JSON-serialisable data (private keys as PKCS#8 PEM) for :meth:`restore`."""
        with self._lock:
            return {
                "format": _SNAPSHOT_FORMAT,
                "name": self.name,
                "base_url": self.base_url,
                "backup_key": _b64(self._backup_key),
                "certificates": [_certificate_to_json(c) for c in self._certificates.values()],
                "deleted": [_certificate_to_json(c) for c in self._deleted.values()],
                "issuers": copy.deepcopy(self._issuers),
                "contacts": copy.deepcopy(self._contacts),
            }

    @classmethod
    def restore(
        cls,
        snapshot: dict[str, object],
        *,
        clock: Clock,
        emit: EmitEvent,
        latest_while_pending: LatestWhilePending = "placeholder",
    ) -> Vault:
        """Rebuild a vault from :meth:`snapshot` output.

        Raises:
            ValueError: the snapshot is not one this version wrote.
        """
        try:
            if snapshot.get("format") != _SNAPSHOT_FORMAT:
                raise ValueError(f"unsupported snapshot format {snapshot.get('format')!r}")
            vault = cls(
                name=str(snapshot["name"]),
                base_url=str(snapshot["base_url"]),
                clock=clock,
                emit=emit,
                latest_while_pending=latest_while_pending,
            )
            vault._backup_key = base64.b64decode(str(snapshot["backup_key"]))
            for record in _list_of(snapshot["certificates"]):
                certificate = _certificate_from_json(record)
                vault._certificates[certificate.name.lower()] = certificate
            for record in _list_of(snapshot["deleted"]):
                certificate = _certificate_from_json(record)
                vault._deleted[certificate.name.lower()] = certificate
            issuers = snapshot.get("issuers") or {}
            if not isinstance(issuers, dict):
                raise ValueError("issuers must be an object")
            vault._issuers = copy.deepcopy(issuers)
            contacts = snapshot.get("contacts")
            vault._contacts = _list_of(contacts) if contacts is not None else None
        except (KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"malformed vault snapshot: {exc!r}") from exc
        return vault

    # ----------------------------------------------------------------------------------------- routing

    def _route(self, request: ApiRequest) -> _Route | None:
        """Map method and path to a handler; ``issuers``/``contacts``/``restore`` are matched before names."""
        segments = request.path.strip("/").split("/") if request.path.strip("/") else []
        method = request.method.upper()
        if not segments:
            return None
        head, rest = segments[0].lower(), segments[1:]
        # "/certificates/{name}/" (Python SDK) and "/certificates/{name}" (C++ SDK) both mean "latest": the
        # stripped path has no tail either way.
        table: dict[str, Callable[[ApiRequest, list[str]], ApiResponse]] = {}
        args: list[str] = []
        operation = ""
        if head == "certificates":
            if not rest:
                table, operation = {"GET": self._list}, "list"
            elif rest[0].lower() == "issuers" and len(rest) == 1:
                table, operation = {"GET": self._issuer_list}, "issuers"
            elif rest[0].lower() == "issuers" and len(rest) == 2:
                args, operation = [rest[1]], "issuers"
                table = {"GET": self._issuer_get, "PUT": self._issuer_set, "PATCH": self._issuer_update}
                table["DELETE"] = self._issuer_delete
            elif rest[0].lower() == "contacts" and len(rest) == 1:
                table = {"GET": self._contacts_get, "PUT": self._contacts_set, "DELETE": self._contacts_delete}
                operation = "contacts"
            elif rest[0].lower() == "restore" and len(rest) == 1:
                table, operation = {"POST": self._restore_backup}, "restore"
            else:
                args = [rest[0]]
                tail = [segment.lower() for segment in rest[1:]]
                if not tail:
                    table = {"GET": self._get_latest, "PATCH": self._update, "DELETE": self._delete}
                    operation = {"GET": "get", "PATCH": "update", "DELETE": "delete"}.get(method, "")
                elif tail == ["pending", "merge"]:
                    table, operation = {"POST": self._merge}, "merge"
                elif len(tail) == 1 and tail[0] in ("create", "import", "backup"):
                    handlers = {"create": self._create, "import": self._import, "backup": self._backup}
                    table, operation = {"POST": handlers[tail[0]]}, tail[0]
                elif tail == ["versions"]:
                    table, operation = {"GET": self._list_versions}, "list_versions"
                elif tail == ["policy"]:
                    table = {"GET": self._get_policy, "PATCH": self._update_policy}
                    operation = {"GET": "get_policy", "PATCH": "update_policy"}.get(method, "")
                elif tail == ["pending"]:
                    table = {"GET": self._get_op, "PATCH": self._update_op, "DELETE": self._delete_op}
                    names = {"GET": "get_operation", "PATCH": "update_operation", "DELETE": "delete_operation"}
                    operation = names.get(method, "")
                elif len(tail) == 1:
                    args.append(rest[1])
                    table = {"GET": self._get_version, "PATCH": self._update}
                    operation = {"GET": "get_version", "PATCH": "update"}.get(method, "")
        elif head == "deletedcertificates":
            if not rest:
                table, operation = {"GET": self._list_deleted}, "list_deleted"
            elif len(rest) == 1 or (len(rest) == 2 and rest[1] == ""):
                args = [rest[0]]
                table = {"GET": self._get_deleted, "DELETE": self._purge}
                operation = {"GET": "get_deleted", "DELETE": "purge"}.get(method, "")
            elif len(rest) == 2 and rest[1].lower() == "recover":
                args, table, operation = [rest[0]], {"POST": self._recover}, "recover"
        elif head == "secrets" and len(rest) in (1, 2):
            args = [rest[0], rest[1] if len(rest) == 2 else ""]
            table, operation = {"GET": self._get_secret}, "get_secret"
        if not table:
            return None
        handler = table.get(method)
        if handler is None:
            return _Route("unknown", self._method_not_allowed, [])
        return _Route(operation, handler, args)

    def _unrouted(self, request: ApiRequest) -> ApiResponse:
        # Guess: the real service's answer to an unknown path is not recorded; this keeps the KeyVault error shape.
        raise _KvError(404, "NotFound", f"The requested resource was not found: {request.method} {request.path}")

    def _method_not_allowed(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        # Guess: not recorded; ASP.NET's wording, in the KeyVault error shape.
        raise _KvError(
            405, "MethodNotAllowed", f"The requested resource does not support http method '{request.method}'."
        )

    # ----------------------------------------------------------------------------------------- helpers

    def _now(self) -> int:
        return int(self._clock())

    def _cert_url(self, name: str, suffix: str = "") -> str:
        return f"{self.base_url}/certificates/{name}{suffix}"

    def _live(self, name: str) -> _Certificate:
        _check_name(name)
        certificate = self._certificates.get(name.lower())
        if certificate is None:
            raise _not_found(name)
        return certificate

    def _latest(self, certificate: _Certificate) -> _Version:
        """The version "get latest" shows: the placeholder while it is the only version, or while a renewal is
        inProgress and ``latest_while_pending`` is ``"placeholder"`` (only the first case is recorded: net, js);
        otherwise the newest completed version.

        Raises:
            _KvError: 404 if the certificate has neither (cannot happen through the API).
        """
        placeholder = certificate.placeholder
        if placeholder is not None and (
            not certificate.versions
            or (
                self._latest_while_pending == "placeholder"
                and certificate.operation is not None
                and certificate.operation.status == _IN_PROGRESS
            )
        ):
            return placeholder
        if not certificate.versions:
            raise _not_found(certificate.name)
        return certificate.versions[-1]

    @staticmethod
    def _find_version(certificate: _Certificate, version: str) -> _Version | None:
        for candidate in certificate.versions:
            if candidate.version == version.lower():
                return candidate
        if certificate.placeholder is not None and certificate.placeholder.version == version.lower():
            return certificate.placeholder
        return None

    def _attributes(self, version: _Version, *, recovery: bool = True) -> JSON:
        attributes: JSON = {
            "enabled": version.enabled,
            "nbf": version.nbf,
            "exp": version.exp,
            "created": version.created,
            "updated": version.updated,
        }
        if recovery:
            attributes["recoveryLevel"] = _RECOVERY_LEVEL
            attributes["recoverableDays"] = _RECOVERABLE_DAYS
        return attributes

    def _policy_json(self, certificate: _Certificate) -> JSON:
        return {"id": self._cert_url(certificate.name, "/policy"), **copy.deepcopy(certificate.policy)}

    def _bundle(self, certificate: _Certificate, version: _Version, *, latest: bool) -> JSON:
        """A CertificateBundle: "latest" adds ``policy`` and the ``pending`` link (rec: python merge, cpp);
        a versioned read adds ``subject``/``issuer``/``serialnumber`` (rec: cpp GetCertificateVersion), and of a
        placeholder shows only ``id`` and ``attributes`` (rec: net VerifyCertificateGetWithPolicyInProgress)."""
        bundle: JSON = {"id": self._cert_url(certificate.name, f"/{version.version}")}
        if version.cer is None and not latest:
            bundle["attributes"] = self._attributes(version)
            return bundle
        if version.cer is not None:
            bundle["kid"] = f"{self.base_url}/keys/{certificate.name}/{version.version}"
            bundle["sid"] = f"{self.base_url}/secrets/{certificate.name}/{version.version}"
            bundle["x5t"] = _crypto.x5t_of(version.cer)
            bundle["cer"] = _b64(version.cer)
        bundle["attributes"] = self._attributes(version)
        if version.tags is not None:
            bundle["tags"] = dict(version.tags)
        if latest:
            bundle["policy"] = self._policy_json(certificate)
            if certificate.operation is not None:
                bundle["pending"] = {"id": self._cert_url(certificate.name, "/pending")}
        elif version.cer is not None:
            leaf = x509.load_der_x509_certificate(version.cer)
            bundle["subject"] = _crypto.name_to_string(leaf.subject)
            bundle["issuer"] = _crypto.name_to_string(leaf.issuer)
            serial = format(leaf.serial_number, "X")
            bundle["serialnumber"] = serial.rjust(len(serial) + len(serial) % 2, "0")
        return bundle

    def _item(self, certificate: _Certificate, version: _Version, *, with_version: bool) -> JSON:
        """A CertificateItem as lists show it: no recovery attributes, ``"subject": ""`` (rec: cpp versions)."""
        suffix = f"/{version.version}" if with_version else ""
        item: JSON = {"id": self._cert_url(certificate.name, suffix)}
        if version.cer is not None:
            item["x5t"] = _crypto.x5t_of(version.cer)
        item["attributes"] = self._attributes(version, recovery=False)
        if version.tags is not None:
            item["tags"] = dict(version.tags)
        item["subject"] = ""
        return item

    def _operation_json(self, certificate: _Certificate, operation: _Operation) -> JSON:
        """The CertificateOperation in the recorded member order; ``issuer`` carries only ``name`` (rec)."""
        body: JSON = {
            "id": self._cert_url(certificate.name, "/pending"),
            "issuer": {"name": operation.issuer_name},
            "csr": _b64(operation.csr),
            "cancellation_requested": operation.cancellation_requested,
            "status": operation.status,
        }
        if operation.status == _IN_PROGRESS:
            is_unknown = operation.issuer_name.lower() == "unknown"
            body["status_details"] = _DETAILS_UNKNOWN if is_unknown else _DETAILS_ISSUER
        elif operation.status == _COMPLETED:
            body["target"] = self._cert_url(certificate.name)
        if operation.preserve_cert_order is not None:
            body["preserveCertOrder"] = operation.preserve_cert_order
        body["request_id"] = operation.request_id
        return body

    def _deleted_bundle(self, certificate: _Certificate) -> JSON:
        assert certificate.deleted_date is not None
        return {
            "recoveryId": f"{self.base_url}/deletedcertificates/{certificate.name}",
            "deletedDate": certificate.deleted_date,
            "scheduledPurgeDate": certificate.deleted_date + _RECOVERABLE_DAYS * _DAY,
            **self._bundle(certificate, self._latest(certificate), latest=True),
        }

    def _new_version_event(self, certificate: _Certificate, version: _Version) -> None:
        self._emit(_event(CERTIFICATE_NEW_VERSION_CREATED, certificate.name, version))

    def _page(self, request: ApiRequest, items: Sequence[Any], path: str) -> JSON:
        """Slice a list by ``maxresults`` (1..25) and a ``$skiptoken`` offset; ``nextLink`` is absolute to this vault.

        Raises:
            _KvError: 400 BadParameter for a bad ``maxresults`` or ``$skiptoken``.
        """
        try:
            size = int(request.query.get("maxresults", "25"))
            offset = int(request.query.get("$skiptoken", "0"))
        except ValueError as exc:
            raise _bad("Property maxresults or $skiptoken has invalid value. Expected an integer.") from exc
        if not 1 <= size <= 25:
            raise _bad(f"Property maxresults has invalid value {size}. It must be between 1 and 25.")
        if offset < 0:
            raise _bad(f"Property $skiptoken has invalid value {offset}.")
        next_link = None
        if offset + size < len(items):
            params = [f"api-version={request.query['api-version']}"] if "api-version" in request.query else []
            params.append(f"maxresults={size}")
            if "includePending" in request.query:
                params.append(f"includePending={request.query['includePending']}")
            params.append(f"$skiptoken={offset + size}")
            next_link = f"{self.base_url}{path}?{'&'.join(params)}"
        return {"value": list(items[offset : offset + size]), "nextLink": next_link}

    # ----------------------------------------------------------------------------------------- create / merge

    def _create(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        name = args[0]
        _check_name(name)
        body = _json_body(request, required=False)
        certificate = self._certificates.get(name.lower())
        self._refuse_deleted_name(name)
        self._refuse_while_in_progress(certificate)
        now = self._now()
        raw_policy = _object(body.get("policy"), "policy")
        if raw_policy is None:
            if certificate is None:
                raise _bad("Property policy is required to create a certificate.")
            policy = copy.deepcopy(certificate.policy)
        else:
            created = certificate.policy["attributes"]["created"] if certificate is not None else None
            policy = _complete_policy(raw_policy, now=now, created=created)
        tags = _tags(body.get("tags"))
        enabled = _enabled_in(body.get("attributes"))
        preserve = body.get("preserveCertOrder")
        if preserve is not None:
            preserve = _boolean(preserve, "preserveCertOrder")
        issuer_name: str = policy["issuer"]["name"]
        if issuer_name.lower() not in ("self", "unknown") and issuer_name not in self._issuers:
            # Guess: the service's text for an unknown issuer object is not recorded.
            raise _bad(f"Property policy.issuer.name has invalid value. Issuer {issuer_name} was not found.")

        key_props = policy["key_props"]
        key: _crypto.PrivateKey | None = None
        if key_props["reuse_key"] and certificate is not None and certificate.versions:
            previous = certificate.versions[-1].key_pem
            key = _crypto.key_from_pem(previous) if previous else None
            # A policy that changed key type cannot reuse the old key; a fresh one follows the new key_props.
            if key is not None and not key_props["kty"].startswith(_crypto.key_properties(key)[0]):
                key = None
        try:
            if key is None:
                key = _crypto.generate_key(key_props["kty"], key_size=key_props["key_size"], crv=key_props.get("crv"))
            template = _template(policy)
            csr = _crypto.build_csr(key, template)
        except ValueError as exc:
            raise _bad(str(exc)) from exc
        key_pem = _crypto.key_to_pem(key)
        if certificate is None:
            certificate = _Certificate(name=name, policy=policy)
        certificate.policy = policy
        months = policy["x509_props"]["validity_months"]
        # Self-signed nbf is 10 minutes before creation and exp is creation + validity (rec: cpp, nbf = created - 600).
        nbf, exp = now - 600, _add_months(now, months)
        operation = _Operation(
            request_id=secrets.token_hex(16),
            issuer_name=issuer_name,
            csr=csr,
            key_pem=key_pem,
            status=_IN_PROGRESS,
            enabled=True if enabled is None else enabled,
            preserve_cert_order=preserve,
        )
        new_version: _Version | None = None
        if issuer_name.lower() == "self":
            try:
                cer = _crypto.build_self_signed(key, template, not_before=nbf, not_after=exp)
            except ValueError as exc:
                raise _bad(str(exc)) from exc
            new_version = _Version(
                version=_new_version_id(),
                created=now,
                updated=now,
                enabled=operation.enabled,
                nbf=nbf,
                exp=exp,
                tags=tags,
                cer=cer,
                chain=(),
                key_pem=key_pem,
                content_type=policy["secret_props"]["contentType"],
            )
            certificate.versions.append(new_version)
            certificate.placeholder = None
        else:
            certificate.placeholder = _Version(
                version=_new_version_id(),
                created=now,
                updated=now,
                enabled=False,
                nbf=nbf,
                exp=exp,
                tags=tags,
                cer=None,
                chain=(),
                key_pem=key_pem,
                content_type=policy["secret_props"]["contentType"],
            )
        # A Self certificate is issued at once, but the create answer still says inProgress, as recorded (cpp, rust):
        # azure-keyvault-certificates 4.12's CreateCertificatePoller never polls when the first answer is already
        # finished, and then begin_create_certificate(...).result() returns None instead of the certificate.
        answer = self._operation_json(certificate, operation)
        certificate.operation = operation if new_version is None else replace(operation, status=_COMPLETED)
        self._certificates[name.lower()] = certificate
        if new_version is not None:
            self._new_version_event(certificate, new_version)
        location = self._cert_url(certificate.name, "/pending") + _query_suffix(
            request, request_id=operation.request_id
        )
        return ApiResponse(202, answer, {"Location": location, "Retry-After": "10"})

    def _merge(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        name = args[0]
        _check_name(name)
        body = _json_body(request, required=True)
        certificate = self._certificates.get(name.lower())
        # Guess: merging with no pending object is 404 PendingCertificateNotFound, by analogy with GET pending.
        if certificate is None or certificate.operation is None:
            raise _pending_not_found(name)
        operation = certificate.operation
        if operation.status != _IN_PROGRESS:
            # Guess: not recorded; modelled on the documented 403 for issuer-backed pending objects.
            raise _KvError(
                403,
                "Forbidden",
                f"Merge is forbidden on pending object {name} because its status is {operation.status}.",
            )
        if operation.issuer_name.lower() != "unknown":
            raise _KvError(
                403,
                "Forbidden",
                f"Merge is forbidden on pending object created with issuer : {operation.issuer_name} while it is in "
                "progess.",
            )
        x5c = body.get("x5c")
        if x5c is None:
            raise _bad("Property x5c is required.")
        items = _string_list(x5c, "x5c")
        try:
            certificates = _crypto.decode_x5c(items)
        except ValueError as exc:
            raise _bad(str(exc)) from exc
        key = _crypto.key_from_pem(operation.key_pem)
        leaf_index = next((i for i, c in enumerate(certificates) if _crypto.same_public_key(c, key)), None)
        if leaf_index is None:
            raise _bad(_MSG_KEY_MISMATCH)
        leaf = certificates[leaf_index]
        chain = [c for i, c in enumerate(certificates) if i != leaf_index]
        tags = _tags(body.get("tags"))
        enabled = _enabled_in(body.get("attributes"))
        placeholder = certificate.placeholder
        now = self._now()
        version = _Version(
            version=_new_version_id(),
            created=now,
            updated=now,
            enabled=operation.enabled if enabled is None else enabled,
            nbf=int(leaf.not_valid_before_utc.timestamp()),
            exp=int(leaf.not_valid_after_utc.timestamp()),
            tags=tags if tags is not None else (placeholder.tags if placeholder is not None else None),
            cer=_der(leaf),
            chain=tuple(_der(c) for c in chain),
            key_pem=operation.key_pem,
            content_type=placeholder.content_type if placeholder else certificate.policy["secret_props"]["contentType"],
        )
        certificate.versions.append(version)
        certificate.placeholder = None
        certificate.operation = replace(operation, status=_COMPLETED)
        self._new_version_event(certificate, version)
        location = self._cert_url(certificate.name) + _query_suffix(request)
        return ApiResponse(201, self._bundle(certificate, version, latest=True), {"Location": location})

    def _import(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        name = args[0]
        _check_name(name)
        body = _json_body(request, required=True)
        self._refuse_deleted_name(name)
        certificate = self._certificates.get(name.lower())
        self._refuse_while_in_progress(certificate)
        value = body.get("value")
        if not isinstance(value, str) or not value:
            raise _bad("Property value is required and must be a string.")
        password = body.get("pwd")
        if password is not None and not isinstance(password, str):
            raise _bad("Property pwd has invalid value. Expected a string.")
        try:
            imported = _crypto.parse_import(value, password)
            kty, key_size, crv = _crypto.key_properties(imported.key)
        except ValueError as exc:
            raise _bad(str(exc)) from exc
        raw_policy = _object(body.get("policy"), "policy") or {}
        tags = _tags(body.get("tags"))
        enabled = _enabled_in(body.get("attributes"))
        now = self._now()
        # The stored policy describes the imported certificate, with issuer Unknown unless given (reference A.6).
        derived = copy.deepcopy(raw_policy)
        key_in = derived.get("key_props") or {}
        derived["key_props"] = {
            "exportable": key_in.get("exportable", True),
            "kty": kty,
            "key_size": key_size,
            "reuse_key": key_in.get("reuse_key", False),
            **({"crv": crv} if crv else {}),
        }
        if not (derived.get("secret_props") or {}).get("contentType"):
            derived["secret_props"] = {"contentType": _PEM if imported.pem else _PKCS12}
        derived["x509_props"] = _crypto.certificate_x509_props(imported.leaf)
        policy = _complete_policy(
            derived, now=now, created=certificate.policy["attributes"]["created"] if certificate else None
        )
        if certificate is None:
            certificate = _Certificate(name=name, policy=policy)
        certificate.policy = policy
        version = _Version(
            version=_new_version_id(),
            created=now,
            updated=now,
            enabled=True if enabled is None else enabled,
            nbf=int(imported.leaf.not_valid_before_utc.timestamp()),
            exp=int(imported.leaf.not_valid_after_utc.timestamp()),
            tags=tags,
            cer=_der(imported.leaf),
            chain=tuple(_der(c) for c in imported.chain),
            key_pem=_crypto.key_to_pem(imported.key),
            content_type=policy["secret_props"]["contentType"],
        )
        certificate.versions.append(version)
        certificate.placeholder = None
        certificate.operation = None
        self._certificates[name.lower()] = certificate
        self._new_version_event(certificate, version)
        return ApiResponse(200, self._bundle(certificate, version, latest=True))

    @staticmethod
    def _refuse_while_in_progress(certificate: _Certificate | None) -> None:
        operation = certificate.operation if certificate is not None else None
        if operation is not None and operation.status == _IN_PROGRESS:
            # "Create or import while the pending object is inProgress -> 409" (rec: js, code Conflict).
            raise _KvError(409, "Conflict", _MSG_CONFLICT)

    def _refuse_deleted_name(self, name: str) -> None:
        if name.lower() in self._deleted:
            # Guess: Key Vault's wording for secrets/keys in the same state, applied to certificates.
            raise _KvError(
                409,
                "Conflict",
                f"Certificate {name} is currently in a deleted but recoverable state, and its name cannot be reused; "
                "in this state, the certificate can only be recovered or purged.",
            )

    # ----------------------------------------------------------------------------------------- reads / updates

    def _get_latest(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._live(args[0])
        return ApiResponse(200, self._bundle(certificate, self._latest(certificate), latest=True))

    def _get_version(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        name, version_id = args
        certificate = self._live(name)
        version = self._find_version(certificate, version_id)
        if version is None:
            raise _not_found(f"{name}/{version_id}")
        return ApiResponse(200, self._bundle(certificate, version, latest=False))

    def _update(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._live(args[0])
        body = _json_body(request, required=True)
        version_id = args[1] if len(args) > 1 and args[1] else None
        version = self._latest(certificate) if version_id is None else self._find_version(certificate, version_id)
        if version is None:
            raise _not_found(f"{args[0]}/{version_id}")
        tags = _tags(body.get("tags"))
        enabled = _enabled_in(body.get("attributes"))
        raw_policy = _object(body.get("policy"), "policy")
        now = self._now()
        if raw_policy is not None:
            certificate.policy = _complete_policy(
                _merge_members(certificate.policy, raw_policy),
                now=now,
                created=certificate.policy["attributes"]["created"],
            )
        updated = replace(
            version,
            updated=now,
            enabled=version.enabled if enabled is None else enabled,
            tags=version.tags if tags is None else tags,
        )
        if certificate.placeholder is version:
            certificate.placeholder = updated
        else:
            certificate.versions[certificate.versions.index(version)] = updated
        return ApiResponse(200, self._bundle(certificate, updated, latest=version_id is None))

    def _list(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        include_pending = request.query.get("includePending", "false").lower() == "true"
        listed = []
        for key in sorted(self._certificates):
            certificate = self._certificates[key]
            latest = self._latest(certificate)
            # Pending-only certificates are listed only with includePending=true (rec: azure-cli).
            if latest.cer is None and not include_pending:
                continue
            listed.append((certificate, latest))
        # Only the page's items are built: a vault of thousands is listed in pages of 25, each costing its own.
        page = self._page(request, listed, "/certificates")
        page["value"] = [self._item(certificate, latest, with_version=False) for certificate, latest in page["value"]]
        return ApiResponse(200, page)

    def _list_versions(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._live(args[0])
        items = [self._item(certificate, v, with_version=True) for v in certificate.versions]
        return ApiResponse(200, self._page(request, items, f"/certificates/{certificate.name}/versions"))

    def _get_policy(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        return ApiResponse(200, self._policy_json(self._live(args[0])))

    def _update_policy(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._live(args[0])
        patch = _json_body(request, required=True)
        merged = _merge_members(certificate.policy, patch)
        certificate.policy = _complete_policy(
            merged, now=self._now(), created=certificate.policy["attributes"]["created"]
        )
        return ApiResponse(200, self._policy_json(certificate))

    # ----------------------------------------------------------------------------------------- pending op

    def _pending(self, name: str) -> tuple[_Certificate, _Operation]:
        _check_name(name)
        certificate = self._certificates.get(name.lower())
        if certificate is None or certificate.operation is None:
            raise _pending_not_found(name)
        return certificate, certificate.operation

    def _get_op(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate, operation = self._pending(args[0])
        wanted = request.query.get("request_id")
        if wanted is not None and wanted.lower() != operation.request_id:
            raise _pending_not_found(args[0])
        # Retry-After: 10 only while inProgress (rec: cpp, python-assets).
        headers = {"Retry-After": "10"} if operation.status == _IN_PROGRESS else {}
        return ApiResponse(200, self._operation_json(certificate, operation), headers)

    def _update_op(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate, operation = self._pending(args[0])
        body = _json_body(request, required=True)
        if "cancellation_requested" not in body:
            raise _bad("Property cancellation_requested is required.")
        requested = _boolean(body["cancellation_requested"], "cancellation_requested")
        if not requested:
            return ApiResponse(200, self._operation_json(certificate, operation))
        if operation.status != _IN_PROGRESS:
            # 403, not the docs' 400: Microsoft's .NET live test VerifyCancelCertificateOperation treats 403 as
            # "the create operation completed before it could be canceled" (reference §4.5). Message is a guess.
            raise _KvError(
                403,
                "Forbidden",
                f"The pending certificate operation of {certificate.name} cannot be cancelled because its status is "
                f"{operation.status}.",
            )
        # The PATCH answer still says inProgress with cancellation_requested true; the next read says "cancelled"
        # (rec: python-assets test_async_request_cancellation_and_deletion).
        answer = self._operation_json(certificate, replace(operation, cancellation_requested=True))
        certificate.operation = replace(operation, cancellation_requested=True, status=_CANCELLED)
        return ApiResponse(200, answer)

    def _delete_op(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate, operation = self._pending(args[0])
        # The disabled placeholder stays: the recording deletes the certificate afterwards and gets it back.
        certificate.operation = None
        return ApiResponse(200, self._operation_json(certificate, operation))

    # ----------------------------------------------------------------------------------------- soft delete

    def _delete(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._live(args[0])
        del self._certificates[certificate.name.lower()]
        certificate.deleted_date = self._now()
        self._deleted[certificate.name.lower()] = certificate
        return ApiResponse(200, self._deleted_bundle(certificate))

    def _deleted_certificate(self, name: str, *, recover: bool = False) -> _Certificate:
        _check_name(name)
        certificate = self._deleted.get(name.lower())
        if certificate is None:
            # Recover of an unknown name answers the long "not found" text (rec: cpp DeleteWrongCertificate).
            raise _not_found(name) if recover else _deleted_not_found(name)
        return certificate

    def _list_deleted(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        include_pending = request.query.get("includePending", "false").lower() == "true"
        items = []
        for key in sorted(self._deleted):
            certificate = self._deleted[key]
            latest = self._latest(certificate)
            if latest.cer is None and not include_pending:
                continue
            assert certificate.deleted_date is not None
            items.append(
                {
                    "recoveryId": f"{self.base_url}/deletedcertificates/{certificate.name}",
                    "deletedDate": certificate.deleted_date,
                    "scheduledPurgeDate": certificate.deleted_date + _RECOVERABLE_DAYS * _DAY,
                    **self._item(certificate, latest, with_version=False),
                }
            )
        return ApiResponse(200, self._page(request, items, "/deletedcertificates"))

    def _get_deleted(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        return ApiResponse(200, self._deleted_bundle(self._deleted_certificate(args[0])))

    def _recover(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._deleted_certificate(args[0], recover=True)
        del self._deleted[certificate.name.lower()]
        certificate.deleted_date = None
        self._certificates[certificate.name.lower()] = certificate
        return ApiResponse(200, self._bundle(certificate, self._latest(certificate), latest=True))

    def _purge(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        certificate = self._deleted_certificate(args[0])
        del self._deleted[certificate.name.lower()]
        return ApiResponse(204, None)

    # ----------------------------------------------------------------------------------------- secret view

    def _get_secret(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        """The certificate's secret as App Service and the CSI driver read it: the only way a key leaves the vault."""
        name, version_id = args
        _check_name(name)
        certificate = self._certificates.get(name.lower())
        version = None
        if certificate is not None:
            if not version_id:
                version = certificate.versions[-1] if certificate.versions else None
            else:
                found = self._find_version(certificate, version_id)
                version = found if found is not None and found.cer is not None else None
        if certificate is None or version is None or version.key_pem is None or version.cer is None:
            shown = f"{name}/{version_id}" if version_id else name
            # Same wording as certificates, for secrets (guess: the secret text is not in our recordings).
            raise _KvError(
                404,
                "SecretNotFound",
                f"A secret with (name/id) {shown} was not found in this key vault. If you recently deleted this secret "
                "you may be able to recover it using the correct recovery command. For help resolving this issue, "
                "please see https://go.microsoft.com/fwlink/?linkid=2125182",
            )
        if not version.enabled:
            raise _KvError(403, "Forbidden", "Operation get is not allowed on a disabled secret.")
        key = _crypto.key_from_pem(version.key_pem)
        leaf = x509.load_der_x509_certificate(version.cer)
        chain = [x509.load_der_x509_certificate(der) for der in version.chain]
        if version.content_type == _PEM:
            value = _crypto.pem_bundle(key, leaf, chain)
        else:
            value = _b64(_crypto.pkcs12_bundle(key, leaf, chain))
        body: JSON = {
            "value": value,
            "contentType": version.content_type,
            "id": f"{self.base_url}/secrets/{certificate.name}/{version.version}",
            "attributes": self._attributes(version),
        }
        if version.tags is not None:
            body["tags"] = dict(version.tags)
        body["kid"] = f"{self.base_url}/keys/{certificate.name}/{version.version}"
        body["managed"] = True
        return ApiResponse(200, body)

    # ----------------------------------------------------------------------------------------- backup / restore

    def _backup(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        """A backup blob is the certificate's record sealed with AES-GCM under a key that never leaves this vault
        (and its snapshots), so private keys do not leave the emulator through backups."""
        certificate = self._live(args[0])
        nonce = os.urandom(12)
        plain = json.dumps(_certificate_to_json(certificate)).encode("utf-8")
        sealed = AESGCM(self._backup_key).encrypt(nonce, plain, b"kv-emulator-backup-1")
        return ApiResponse(200, {"value": _b64url(nonce + sealed)})

    def _restore_backup(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        body = _json_body(request, required=True)
        value = body.get("value")
        if not isinstance(value, str):
            raise _bad("Property value is required and must be a base64url string.")
        try:
            blob = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            plain = AESGCM(self._backup_key).decrypt(blob[:12], blob[12:], b"kv-emulator-backup-1")
            certificate = _certificate_from_json(json.loads(plain))
        except Exception as exc:
            # Guess: the service's text for a foreign or corrupt backup is not recorded.
            raise _bad("Property value has invalid value. The backup blob is corrupt or from another vault.") from exc
        if certificate.name.lower() in self._certificates or certificate.name.lower() in self._deleted:
            raise _KvError(409, "Conflict", f"Certificate {certificate.name} already exists in this key vault.")
        certificate.deleted_date = None
        self._certificates[certificate.name.lower()] = certificate
        return ApiResponse(200, self._bundle(certificate, self._latest(certificate), latest=True))

    # ----------------------------------------------------------------------------------------- issuers / contacts

    def _issuer_json(self, name: str) -> JSON:
        stored = self._issuers[name]
        return {"id": f"{self.base_url}/certificates/issuers/{name}", **copy.deepcopy(stored)}

    def _issuer_list(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        items = [
            {"id": f"{self.base_url}/certificates/issuers/{name}", "provider": self._issuers[name]["provider"]}
            for name in sorted(self._issuers)
        ]
        return ApiResponse(200, self._page(request, items, "/certificates/issuers"))

    def _known_issuer(self, name: str) -> str:
        _check_name(name)
        if name not in self._issuers:
            # Guess: not recorded.
            raise _KvError(404, "CertificateIssuerNotFound", f"Issuer not found: {name}")
        return name

    def _issuer_get(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        return ApiResponse(200, self._issuer_json(self._known_issuer(args[0])))

    def _issuer_set(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        name = args[0]
        _check_name(name)
        body = _json_body(request, required=True)
        if not isinstance(body.get("provider"), str):
            raise _bad("Property provider is required.")
        now = self._now()
        self._issuers[name] = _issuer_record(body, created=now, now=now)
        return ApiResponse(200, self._issuer_json(name))

    def _issuer_update(self, request: ApiRequest, args: list[str]) -> ApiResponse:
        name = self._known_issuer(args[0])
        body = _json_body(request, required=True)
        stored = self._issuers[name]
        merged = {**stored, **{k: v for k, v in body.items() if k != "attributes"}}
        if not isinstance(merged.get("provider"), str):
            raise _bad("Property provider has invalid value.")
        enabled = _enabled_in(body.get("attributes"))
        if enabled is not None:
            merged["attributes"] = {**stored["attributes"], "enabled": enabled}
        self._issuers[name] = _issuer_record(merged, created=stored["attributes"]["created"], now=self._now())
        return ApiResponse(200, self._issuer_json(name))

    def _issuer_delete(self, _request: ApiRequest, args: list[str]) -> ApiResponse:
        name = self._known_issuer(args[0])
        answer = self._issuer_json(name)
        del self._issuers[name]
        return ApiResponse(200, answer)

    def _contacts_json(self) -> JSON:
        if self._contacts is None:
            # Guess: not recorded.
            raise _KvError(404, "ContactsNotFound", "Contacts not found")
        return {"id": f"{self.base_url}/certificates/contacts", "contacts": copy.deepcopy(self._contacts)}

    def _contacts_get(self, _request: ApiRequest, _args: list[str]) -> ApiResponse:
        return ApiResponse(200, self._contacts_json())

    def _contacts_set(self, request: ApiRequest, _args: list[str]) -> ApiResponse:
        body = _json_body(request, required=True)
        contacts = body.get("contacts")
        if not isinstance(contacts, list) or not all(isinstance(c, dict) for c in contacts):
            raise _bad("Property contacts has invalid value. Expected an array of objects.")
        self._contacts = copy.deepcopy(contacts)
        return ApiResponse(200, self._contacts_json())

    def _contacts_delete(self, _request: ApiRequest, _args: list[str]) -> ApiResponse:
        answer = self._contacts_json()
        self._contacts = None
        return ApiResponse(200, answer)


# --------------------------------------------------------------------------------------------- module helpers


def _error(error: _KvError) -> ApiResponse:
    # No Retry-After on errors: azure-core retries any error that carries one (reference §6).
    return ApiResponse(error.status, {"error": {"code": error.code, "message": error.message}})


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise _bad(f"The request URI contains an invalid name: {name}")


def _new_version_id() -> str:
    return secrets.token_hex(16)


def _der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


def _event(event_type: str, name: str, version: _Version) -> VaultEvent:
    return VaultEvent(
        event_type=event_type, certificate_name=name, version=version.version, nbf=version.nbf, exp=version.exp
    )


def _query_suffix(request: ApiRequest, **extra: str) -> str:
    params = [f"api-version={request.query['api-version']}"] if "api-version" in request.query else []
    params += [f"{key}={value}" for key, value in extra.items()]
    return "?" + "&".join(params) if params else ""


def _json_body(request: ApiRequest, *, required: bool) -> JSON:
    """Parse a JSON object body.

    Raises:
        _KvError: 400 BadParameter when the body is not JSON, not an object, sent with another content type, or
            missing while required.
    """
    if not request.body.strip():
        if required:
            raise _bad("The request body is required and must be a JSON object.")
        return {}
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise _bad(f"The request content type must be application/json, not {content_type or 'missing'}.")
    try:
        parsed = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _bad(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise _bad("The request body must be a JSON object.")
    return parsed


def _issuer_record(body: JSON, *, created: int, now: int) -> JSON:
    record: JSON = {"provider": body["provider"]}
    credentials = body.get("credentials")
    if isinstance(credentials, dict):
        # The service never returns the issuer password (rec: cpp CreateGetIssuer shows only account_id).
        record["credentials"] = {k: v for k, v in credentials.items() if k != "pwd"}
    if isinstance(body.get("org_details"), dict):
        record["org_details"] = copy.deepcopy(body["org_details"])
    enabled = (body.get("attributes") or {}).get("enabled", True)
    record["attributes"] = {"enabled": bool(enabled), "created": created, "updated": now}
    return record


def _list_of(value: object) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _version_to_json(version: _Version) -> JSON:
    return {
        "version": version.version,
        "created": version.created,
        "updated": version.updated,
        "enabled": version.enabled,
        "nbf": version.nbf,
        "exp": version.exp,
        "tags": dict(version.tags) if version.tags is not None else None,
        "cer": _b64(version.cer) if version.cer is not None else None,
        "chain": [_b64(der) for der in version.chain],
        "key": version.key_pem,
        "content_type": version.content_type,
    }


def _version_from_json(record: JSON) -> _Version:
    return _Version(
        version=str(record["version"]),
        created=int(record["created"]),
        updated=int(record["updated"]),
        enabled=bool(record["enabled"]),
        nbf=int(record["nbf"]),
        exp=int(record["exp"]),
        tags=dict(record["tags"]) if record["tags"] is not None else None,
        cer=base64.b64decode(record["cer"]) if record["cer"] is not None else None,
        chain=tuple(base64.b64decode(der) for der in record["chain"]),
        key_pem=record["key"],
        content_type=str(record["content_type"]),
    )


def _certificate_to_json(certificate: _Certificate) -> JSON:
    operation = certificate.operation
    return {
        "name": certificate.name,
        "policy": copy.deepcopy(certificate.policy),
        "versions": [_version_to_json(v) for v in certificate.versions],
        "placeholder": _version_to_json(certificate.placeholder) if certificate.placeholder else None,
        "operation": None
        if operation is None
        else {
            "request_id": operation.request_id,
            "issuer_name": operation.issuer_name,
            "csr": _b64(operation.csr),
            "key": operation.key_pem,
            "status": operation.status,
            "cancellation_requested": operation.cancellation_requested,
            "enabled": operation.enabled,
            "preserve_cert_order": operation.preserve_cert_order,
        },
        "emitted": sorted([version, event_type] for version, event_type in certificate.emitted),
        "deleted_date": certificate.deleted_date,
    }


def _certificate_from_json(record: JSON) -> _Certificate:
    op = record["operation"]
    operation = (
        None
        if op is None
        else _Operation(
            request_id=str(op["request_id"]),
            issuer_name=str(op["issuer_name"]),
            csr=base64.b64decode(op["csr"]),
            key_pem=str(op["key"]),
            status=str(op["status"]),
            cancellation_requested=bool(op["cancellation_requested"]),
            enabled=bool(op["enabled"]),
            preserve_cert_order=op["preserve_cert_order"],
        )
    )
    return _Certificate(
        name=str(record["name"]),
        policy=dict(record["policy"]),
        versions=[_version_from_json(v) for v in record["versions"]],
        placeholder=_version_from_json(record["placeholder"]) if record["placeholder"] else None,
        operation=operation,
        emitted={(str(v), str(t)) for v, t in record["emitted"]},
        deleted_date=record["deleted_date"],
    )
