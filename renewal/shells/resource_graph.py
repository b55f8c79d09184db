"""Azure Resource Graph: find the resources that reference a vault's certificates (``renewal consumers``).

One KQL query over the ``resources`` table reads every resource of the four consumer types with its
``properties`` (``POST /providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01``, paged with
``$skipToken``); ``renewal.pure.consumers.classify`` reads the references out of them. Matching is done there,
not in KQL, so no vault or certificate name is ever spliced into a query.

API Management *certificate entities* (``Microsoft.ApiManagement/service/certificates``) are not in Resource
Graph's ``resources`` table (its supported-types list has ``microsoft.apimanagement/service`` only), so they are
read from ARM, one ``GET {service}/certificates`` per service the query found.

The identity needs **Reader** on each subscription listed: Resource Graph returns only what it may read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from renewal.pure.consumers import Consumer, classify
from renewal.shells.arm import ArmClient

__all__ = ["API_VERSION", "CONSUMERS_QUERY", "ResourceGraph", "list_consumers"]

logger = logging.getLogger(__name__)

API_VERSION = "2022-10-01"
APIM_API_VERSION = "2024-05-01"
CONSUMERS_QUERY = (
    "resources\n"
    "| where type in~ ('microsoft.network/applicationgateways', 'microsoft.apimanagement/service', "
    "'microsoft.web/certificates', 'microsoft.app/managedenvironments/certificates')\n"
    "| project id, type, name, properties"
)
_ROLE = "Reader on the subscriptions searched"
_PAGES = 100


class _Configured(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def resource_id(self) -> str: ...


class ResourceGraph:
    """Runs Resource Graph queries through an ``ArmClient``.

    Attributes:
        subscriptions: the subscriptions searched; all the identity can read when empty.
    """

    def __init__(self, arm: ArmClient, *, subscriptions: Sequence[str] = (), page_size: int = 1000) -> None:
        self.arm = arm
        self.subscriptions = tuple(subscriptions)
        self._page_size = page_size

    def rows(self, query: str) -> Iterator[dict[str, Any]]:
        """Every row ``query`` answers, page after page (``resultFormat: objectArray``).

        Raises:
            PermanentError, RetryableError: as ``ArmClient.send``.
        """
        skip_token: str | None = None
        for _ in range(_PAGES):
            options: dict[str, object] = {"resultFormat": "objectArray", "$top": self._page_size}
            if skip_token:
                options["$skipToken"] = skip_token
            body: dict[str, object] = {"query": query, "options": options}
            if self.subscriptions:
                body["subscriptions"] = list(self.subscriptions)
            answer = self.arm.send(
                "POST", "/providers/Microsoft.ResourceGraph/resources", api_version=API_VERSION, role=_ROLE, body=body
            ).body
            data = answer.get("data")
            for row in data if isinstance(data, list) else []:
                if isinstance(row, dict):
                    yield row
            token = answer.get("$skipToken")
            if not isinstance(token, str) or not token:
                if str(answer.get("resultTruncated", "")).lower() == "true":
                    logger.warning("Resource Graph truncated the answer without a $skipToken; some rows are missing")
                return
            skip_token = token
        logger.warning("Resource Graph paging stopped after %d pages", _PAGES)


def list_consumers(
    resource_graph: ResourceGraph,
    *,
    vault_name: str,
    certificate_name: str | None = None,
    configured: Sequence[_Configured] = (),
    api_management_certificates: bool = True,
) -> list[Consumer]:
    """The Azure resources that reference ``vault_name``'s certificates (``certificate_name``'s only, when given),
    each flagged when pinned to a version and with the configured target that covers it, if any.

    ``configured`` are the configured targets (anything with ``name`` and ``resource_id``).

    Raises:
        PermanentError, RetryableError: as ``ArmClient.send`` (``arm_authorization_failed`` names Reader).
    """
    resources: list[Mapping[str, Any]] = []
    for row in resource_graph.rows(CONSUMERS_QUERY):
        resources.append(row)
        if api_management_certificates and str(row.get("type", "")).lower() == "microsoft.apimanagement/service":
            resources.extend(_api_management_certificates(resource_graph.arm, str(row.get("id", ""))))
    return classify(
        resources,
        vault_name=vault_name,
        certificate_name=certificate_name,
        configured=[(target.name, target.resource_id) for target in configured],
    )


def _api_management_certificates(arm: ArmClient, service_id: str) -> Iterator[Mapping[str, Any]]:
    role = "API Management Service Reader (or Reader) on the service"
    page = arm.get(f"{service_id}/certificates", api_version=APIM_API_VERSION, role=role)
    for _ in range(_PAGES):
        values = page.get("value")
        for entity in values if isinstance(values, list) else []:
            if isinstance(entity, dict):
                yield {**entity, "type": "Microsoft.ApiManagement/service/certificates"}
        next_link = page.get("nextLink")
        if not isinstance(next_link, str) or not next_link:
            return
        page = arm.get_link(next_link, role=role)
