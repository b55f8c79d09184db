"""Deployment targets: Azure services told, through ARM, to serve a new Key Vault version now.

Targets are configured in ``RENEWAL_TARGETS``, a JSON object of named targets::

    {
      "edge": {
        "kind": "app_gateway",
        "resource_id": "/subscriptions/.../resourceGroups/net/providers/Microsoft.Network/applicationGateways/edge",
        "probe": "www.corp.example:443",
        "sni": "www.corp.example",
        "tag": "renewal-target=edge",
        "options": {"certificate_names": ["www"]}
      }
    }

``kind`` and ``resource_id`` are required; ``probe`` (``host[:port]``, ``[v6]:port``), ``sni``, ``tag`` and
``options`` (the kind's options dataclass, unknown keys refused) are optional. Which targets a certificate gets
(``targets_for``): when its tags hold ``renewal-targets=a,b``, exactly the targets named there; otherwise, as for
webhooks, every target without a ``tag`` and those whose ``key=value`` its tags contain.

The ARM client (``arm_client_from_environ``) talks to ``RENEWAL_ARM_ENDPOINT`` (default
``https://management.azure.com``; a sovereign cloud's endpoint, or loopback for tests) with the Function App's
managed identity, trusting ``RENEWAL_ARM_CA_BUNDLE`` in addition when it is set (a loopback fake's CA).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields, is_dataclass
from datetime import timedelta
from types import MappingProxyType, NoneType, UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

from renewal._shared.specs import match_tag, named_specs, reject_unknown_keys
from renewal._shared.urls import is_loopback_host
from renewal.errors import ConfigurationError
from renewal.pure.consumers import SELF_PICKUP
from renewal.targets._common import resource_id_problem
from renewal.targets._protocol import DeploymentTarget, NewVersion, ProbeEndpoint, PushResult, TargetConfig
from renewal.targets.api_management import ApiManagement, ApiManagementOptions
from renewal.targets.app_gateway import AppGateway, AppGatewayOptions
from renewal.targets.app_service import AppService, AppServiceOptions
from renewal.targets.container_apps import ContainerApps, ContainerAppsOptions

if TYPE_CHECKING:
    from renewal.shells.arm import ArmClient

__all__ = [
    "ARM_CA_BUNDLE",
    "ARM_ENDPOINT",
    "ARM_STATIC_TOKEN",
    "KINDS",
    "PICKUP_DEADLINES",
    "SELF_PICKUP",
    "TARGETS",
    "TARGETS_TAG",
    "DeploymentTarget",
    "NewVersion",
    "ProbeEndpoint",
    "PushResult",
    "TargetConfig",
    "arm_client_from_environ",
    "build_target",
    "parse_targets",
    "slowest_pickup",
    "targets_for",
]

TARGETS = "RENEWAL_TARGETS"
ARM_ENDPOINT = "RENEWAL_ARM_ENDPOINT"
ARM_CA_BUNDLE = "RENEWAL_ARM_CA_BUNDLE"
# Development only: a fixed bearer token for a loopback ARM fake (the local stack, the tests).
ARM_STATIC_TOKEN = "RENEWAL_ARM_STATIC_TOKEN"  # noqa: S105 - the setting's name, not a token
TARGETS_TAG = "renewal-targets"

# kind -> (class, options class). An explicit registry: nothing mutates it at run time.
KINDS: Mapping[str, tuple[type[Any], type[Any]]] = MappingProxyType(
    {
        "app_gateway": (AppGateway, AppGatewayOptions),
        "api_management": (ApiManagement, ApiManagementOptions),
        "app_service": (AppService, AppServiceOptions),
        "container_apps": (ContainerApps, ContainerAppsOptions),
    }
)

# How long after a successful push the service may take to serve the new version: the probe's deadline.
PICKUP_DEADLINES: Mapping[str, timedelta] = MappingProxyType(
    {
        # A gateway update re-reads Key Vault at once; applying it to every instance takes minutes.
        "app_gateway": timedelta(minutes=15),
        "api_management": timedelta(minutes=30),
        # The PUT fetches the version synchronously; bindings reach every front end within minutes.
        "app_service": timedelta(hours=1),
        # No refresh call is documented, so the re-put may not shorten the platform's own 12 hours.
        "container_apps": timedelta(hours=12),
    }
)


_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?", re.ASCII
)
_KEYS = frozenset({"kind", "resource_id", "probe", "sni", "tag", "options"})
_RESOURCE_TYPES = MappingProxyType(
    {
        "app_gateway": ("Microsoft.Network/applicationGateways",),
        "api_management": ("Microsoft.ApiManagement/service",),
        "app_service": ("Microsoft.Web/certificates",),
        "container_apps": ("Microsoft.App/managedEnvironments/certificates",),
    }
)
_SOVEREIGN_ARM_HOSTS = frozenset(
    {"management.azure.com", "management.usgovcloudapi.net", "management.chinacloudapi.cn"}
)


def parse_targets(environ: Mapping[str, str]) -> tuple[TargetConfig, ...]:
    """Read ``RENEWAL_TARGETS`` (empty or missing: no targets).

    Raises:
        ConfigurationError: the JSON, a name, a kind, a resource id, the probe, the tag or an option is not valid;
            the message names the target and the key, never a value.
    """
    specs = named_specs(TARGETS, environ.get(TARGETS, ""), noun="target", shape="a JSON object of named targets")
    return tuple(_parse_target(name, spec) for name, spec in specs)


def targets_for(configs: Sequence[TargetConfig], tags: Mapping[str, str]) -> tuple[TargetConfig, ...]:
    """The targets a certificate with ``tags`` gets.

    A ``renewal-targets=a,b`` tag names them explicitly (names compared case-insensitively; unknown names
    select nothing). Without it: every target without a tag filter, and those whose ``key=value`` the tags
    contain (key compared case-insensitively, value exactly, both trimmed), as ``endpoints_for`` does.
    """
    folded = {key.strip().lower(): value.strip() for key, value in tags.items()}
    named = folded.get(TARGETS_TAG)
    if named is not None:
        wanted = {part.strip().lower() for part in named.split(",") if part.strip()}
        return tuple(config for config in configs if config.name.lower() in wanted)
    return tuple(
        config
        for config in configs
        if config.match_tag is None or folded.get(config.match_tag[0].lower()) == config.match_tag[1]
    )


def build_target(config: TargetConfig, arm: ArmClient) -> DeploymentTarget:
    """The target object for ``config``, pushing through ``arm``.

    Raises:
        ConfigurationError: the kind is unknown or its options are of another kind.
    """
    if config.kind not in KINDS:
        raise ConfigurationError(TARGETS, f"target {config.name!r}: unknown kind {config.kind[:40]!r}")
    target_class, options_class = KINDS[config.kind]
    if not isinstance(config.options, options_class):
        raise ConfigurationError(TARGETS, f"target {config.name!r}: options are not {options_class.__name__}")
    target: DeploymentTarget = target_class(
        name=config.name,
        resource_id=config.resource_id,
        arm=arm,
        pickup_deadline=PICKUP_DEADLINES[config.kind],
        options=config.options,
    )
    return target


def slowest_pickup(configs: Sequence[TargetConfig]) -> timedelta:
    """The longest any of ``configs`` may take to serve a new version by itself (``SELF_PICKUP``), zero for none.

    The renewal window rule (docs/targets.md): a renewal must start at least this long, plus the CA's
    turnaround, before the current version expires, since a push that keeps failing leaves the service on its
    own schedule.
    """
    return max((SELF_PICKUP[config.kind] for config in configs if config.kind in SELF_PICKUP), default=timedelta())


def arm_client_from_environ(
    environ: Mapping[str, str],
    *,
    credential: object | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ArmClient:
    """An ``ArmClient`` for ``RENEWAL_ARM_ENDPOINT`` with ``credential`` (``DefaultAzureCredential`` when ``None``).

    Raises:
        ConfigurationError: the endpoint is not https on Azure's public or sovereign ARM host or on loopback, or
            the CA bundle names no file.
    """
    from renewal.shells.arm import ARM_ENDPOINT as DEFAULT_ENDPOINT
    from renewal.shells.arm import ArmClient

    endpoint = (environ.get(ARM_ENDPOINT) or "").strip() or DEFAULT_ENDPOINT
    parts = urlsplit(endpoint)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or parts.username or parts.password or parts.path.strip("/") or parts.query:
        raise ConfigurationError(ARM_ENDPOINT, "must be an https URL with no path, e.g. https://management.azure.com")
    if host not in _SOVEREIGN_ARM_HOSTS and not is_loopback_host(host):
        raise ConfigurationError(ARM_ENDPOINT, "must be an Azure Resource Manager endpoint (or loopback, for tests)")
    bundle = (environ.get(ARM_CA_BUNDLE) or "").strip() or None
    if bundle is not None and not os.path.isfile(bundle):
        raise ConfigurationError(ARM_CA_BUNDLE, "names a file that does not exist")
    static = (environ.get(ARM_STATIC_TOKEN) or "").strip()
    if static and credential is None:
        if not is_loopback_host(host):
            raise ConfigurationError(
                ARM_STATIC_TOKEN, "is for a local ARM fake only, but the ARM endpoint is not loopback"
            )
        from renewal.shells.keyvault import StaticTokenCredential

        credential = StaticTokenCredential(static)
    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return ArmClient(credential=credential, endpoint=endpoint, ca_bundle=bundle, sleep=sleep)  # type: ignore[arg-type]


def _parse_target(name: str, spec: Mapping[str, object]) -> TargetConfig:
    def problem(text: str) -> ConfigurationError:
        return ConfigurationError(TARGETS, f"target {name!r}: {text}")

    reject_unknown_keys(TARGETS, f"target {name!r}", spec, _KEYS)
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise problem(f"kind must be one of {', '.join(sorted(KINDS))}")
    resource_id = spec.get("resource_id")
    if not isinstance(resource_id, str) or not resource_id.strip():
        raise problem("resource_id is required")
    resource_id = resource_id.strip().rstrip("/")
    id_problem = resource_id_problem(resource_id, *_RESOURCE_TYPES[kind])
    if id_problem:
        raise problem(id_problem)
    options = spec.get("options", {})
    if not isinstance(options, dict):
        raise problem("options must be a JSON object")
    return TargetConfig(
        name=name,
        kind=kind,
        resource_id=resource_id,
        probe=_parse_probe(spec.get("probe"), spec.get("sni"), problem),
        match_tag=match_tag(TARGETS, f"target {name!r}", spec.get("tag")),
        options=_parse_options(KINDS[kind][1], options, problem),
    )


def _parse_probe(probe: object, sni: object, problem: Callable[[str], ConfigurationError]) -> ProbeEndpoint | None:
    if sni is not None and (not isinstance(sni, str) or not _HOST.fullmatch(sni.strip())):
        raise problem("sni must be a DNS name")
    if probe is None:
        if sni is not None:
            raise problem("sni needs a probe")
        return None
    if not isinstance(probe, str) or not probe.strip():
        raise problem("probe must be 'host[:port]'")
    try:
        parts = urlsplit(f"//{probe.strip()}")
        port = parts.port
    except ValueError:
        raise problem("probe must be 'host[:port]' with a port from 1 to 65535") from None
    host = parts.hostname or ""
    if parts.username or parts.password or parts.path or parts.query or not host or port == 0:
        raise problem("probe must be 'host[:port]'")
    if ":" not in host and not _HOST.fullmatch(host):
        raise problem("probe's host must be a DNS name or an IP address")
    return ProbeEndpoint(host=host, port=port or 443, sni=sni.strip() if isinstance(sni, str) else None)


def _parse_options(
    options_class: type[Any], raw: Mapping[str, object], problem: Callable[[str], ConfigurationError]
) -> object:
    assert is_dataclass(options_class), "options classes are dataclasses"
    hints = get_type_hints(options_class)
    declared = {option.name: option for option in fields(options_class)}
    unknown = sorted(set(raw) - set(declared))
    if unknown:
        raise problem(f"unknown option(s) {', '.join(key[:40] for key in unknown)}")
    values: dict[str, object] = {}
    for key, option in declared.items():
        if key not in raw:
            if option.default is MISSING and option.default_factory is MISSING:
                raise problem(f"option {key} is required")
            continue
        values[key] = _option_value(hints[key], raw[key], key, problem)
    return options_class(**values)


def _option_value(hint: Any, value: object, key: str, problem: Callable[[str], ConfigurationError]) -> object:
    def wrong(must: str) -> ConfigurationError:
        return problem(f"option {key} must be {must}")

    if get_origin(hint) in (Union, UnionType):
        if value is None:
            return None
        (hint,) = (arg for arg in get_args(hint) if arg is not NoneType)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise wrong("true or false")
    if get_origin(hint) is tuple:
        if isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value):
            return tuple(item.strip() for item in value)
        raise wrong("a list of non-empty strings")
    assert hint is str, f"options of type {hint!r} are not supported"
    if isinstance(value, str) and value.strip() and value.isascii():
        return value.strip()
    raise wrong("a non-empty string")
