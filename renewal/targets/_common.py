"""What every kind shares: the state a push starts from (``ArmTarget``), matching a Key Vault reference to the new
version, ARM id checks, the errors for a reference that pins a version or a resource that does not reference the
certificate, and the body of a re-put."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit

from renewal.errors import PermanentError
from renewal.pure.consumers import SecretReference, parse_secret_reference, same_name
from renewal.targets._protocol import NewVersion

if TYPE_CHECKING:
    from renewal.shells.arm import ArmClient

__all__ = [
    "ArmTarget",
    "is_new_versions_secret",
    "not_referenced",
    "pinned",
    "properties_of",
    "reput_body",
    "resource_id_problem",
    "tags_of",
]

OptionsT = TypeVar("OptionsT")

_RESOURCE_ID = re.compile(
    r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/(?P<provider>[A-Za-z.]+)/(?P<rest>[^?#]+)", re.ASCII
)


def resource_id_problem(resource_id: str, *types: str) -> str | None:
    """Why ``resource_id`` is not the ARM id of one of ``types`` (``Microsoft.Web/certificates``), or ``None``."""
    match = _RESOURCE_ID.fullmatch(resource_id)
    if match is None:
        return "resource_id must be an ARM resource id (/subscriptions/.../resourceGroups/.../providers/...)"
    segments = match["rest"].split("/")
    if len(segments) % 2:
        return "resource_id must end with a resource name"
    found = "/".join([match["provider"], *segments[0::2]]).lower()
    if found not in {t.lower() for t in types}:
        return f"resource_id must be the id of a {' or '.join(types)}"
    return None


def _vault_host(new_version: NewVersion) -> str:
    parts = urlsplit(new_version.vault_url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port and parts.port != 443 else host


def is_new_versions_secret(reference: SecretReference, new_version: NewVersion) -> bool:
    """Whether ``reference`` names the new version's certificate in its vault (any version)."""
    host = reference.vault_host.removesuffix(":443")
    return host == _vault_host(new_version) and same_name(reference.name, new_version.certificate_name)


def pinned(kind: str, resource_id: str, where: str, version: str) -> PermanentError:
    """The error for a reference that pins one version: it never rotates, whatever we push."""
    return PermanentError(
        f"{kind} {resource_id}: {where} references the certificate's version {version}, so it will never rotate; "
        "point it at the versionless secret id (https://<vault>.vault.azure.net/secrets/<name>) instead",
        reason="version_pinned",
    )


def not_referenced(kind: str, resource_id: str, new_version: NewVersion) -> PermanentError:
    """The error for a configured target that does not use the certificate at all (a configuration mistake)."""
    return PermanentError(
        f"{kind} {resource_id} does not reference {new_version.secret_id}; select the target for the certificates "
        "it serves (its tag, or the certificate's renewal-targets tag)",
        reason="certificate_not_referenced",
    )


def tags_of(resource: Mapping[str, Any]) -> dict[str, str]:
    """A resource's tags, as strings."""
    tags = resource.get("tags")
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def properties_of(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """A resource's ``properties`` (empty when missing)."""
    properties = resource.get("properties")
    return properties if isinstance(properties, Mapping) else {}


def reput_body(current: Mapping[str, Any], properties: Mapping[str, object]) -> dict[str, object]:
    """The body that puts ``current`` (a resource as ARM answered a GET) back with only ``properties``: its
    location, and its tags when it has any, so the re-put changes nothing but makes the service fetch again."""
    body: dict[str, object] = {"location": current.get("location", ""), "properties": dict(properties)}
    tags = tags_of(current)
    if tags:
        body["tags"] = tags
    return body


class ArmTarget(Generic[OptionsT]):
    """What a push to one ARM resource starts from; each kind adds ``kind``, ``label`` and ``push``.

    Args:
        name: the target's name from configuration.
        resource_id: the ARM id of the resource the push changes.
        arm: the ARM client every request goes through.
        pickup_deadline: how long the service may take to serve a pushed version.
        options: the kind's own options.
    """

    kind: ClassVar[str]
    # What the errors call the resource ("application gateway").
    label: ClassVar[str]

    def __init__(
        self, *, name: str, resource_id: str, arm: ArmClient, pickup_deadline: timedelta, options: OptionsT
    ) -> None:
        self.name = name
        self.resource_id = resource_id
        self.pickup_deadline = pickup_deadline
        self._arm = arm
        self._options = options

    def _uses_new_version(self, raw: object, new_version: NewVersion, *, where: str) -> bool:
        """Whether the Key Vault reference ``raw`` (found at ``where`` in the resource) names the new version's
        certificate without pinning a version; ``False`` for no reference or another secret.

        Raises:
            PermanentError: ``version_pinned``: it names the certificate but pins one version.
        """
        reference = parse_secret_reference(raw)
        if reference is None or not is_new_versions_secret(reference, new_version):
            return False
        if reference.version is not None:
            raise pinned(self.label, self.resource_id, where, reference.version)
        return True

    def _not_referenced(self, new_version: NewVersion) -> PermanentError:
        """``not_referenced`` for this resource."""
        return not_referenced(self.label, self.resource_id, new_version)
