"""A loopback fake of Azure Resource Graph's query API, serving seeded resources.

``POST /providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01`` with
``{"subscriptions": [...], "query": KQL, "options": {"$top", "$skipToken", "resultFormat": "objectArray"}}``
answers ``{"totalRecords", "count", "resultTruncated", "data": [...], "$skipToken"}``, ``page_size`` rows a page
(or ``$top``, if smaller). It does not parse KQL: it recognises the ``resources | where type in~ (...)`` queries
the app sends by the quoted types, serves the seeded resources of those types in the subscriptions asked for (all
when none are), and answers 400 ``InvalidQuery`` to anything else. ``resultFormat`` other than ``objectArray`` is
refused, as the app never asks for tables. Mount it on an ``ArmTargetsFake`` (``fake.mounted = graph.handle``), so
both share one endpoint and token, or serve it alone with ``LoopbackServer``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.arm_targets import arm_error
from tests.fakes.loopback import Request, Response

__all__ = ["API_VERSION", "ResourceGraphFake"]

API_VERSION = "2022-10-01"
_PATH = "/providers/microsoft.resourcegraph/resources"
_TYPES = re.compile(r"where\s+type\s+in~\s*\(([^)]*)\)", re.IGNORECASE)


class ResourceGraphFake:
    """Resource Graph over a set of resources.

    Attributes:
        resources: the resources it indexes (ARM's shape: ``id``, ``type``, ``name``, ``properties``).
        page_size: rows per page.
        queries: every request body it answered, in order.
    """

    def __init__(self, resources: Iterable[Mapping[str, Any]] = (), *, page_size: int = 1000) -> None:
        self.resources = [dict(resource) for resource in resources]
        self.page_size = page_size
        self.queries: list[dict[str, Any]] = []

    def handle(self, request: Request) -> Response | None:
        """The answer to a Resource Graph query, or ``None`` for a request that is not one."""
        if request.path.lower() != _PATH:
            return None
        if request.method != "POST":
            return arm_error(405, "MethodNotAllowed", "Only POST is supported.")
        if request.query.get("api-version") != API_VERSION:
            return arm_error(400, "InvalidApiVersionParameter", "The api-version is invalid.")
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return arm_error(400, "BadRequest", "query is required.")
        self.queries.append(body)
        options = body.get("options") or {}
        if options.get("resultFormat", "objectArray") != "objectArray":
            return arm_error(400, "BadRequest", "the fake answers objectArray only.")
        match = _TYPES.search(body["query"])
        if match is None or not body["query"].lstrip().lower().startswith("resources"):
            return arm_error(400, "InvalidQuery", "Query is invalid. Please refer to the documentation.")
        types = {t.strip().strip("'\"").lower() for t in match[1].split(",")}
        subscriptions = {str(s).lower() for s in body.get("subscriptions") or []}
        rows = [
            {key: resource.get(key) for key in ("id", "type", "name", "properties")}
            for resource in self.resources
            if str(resource.get("type", "")).lower() in types
            and (not subscriptions or _subscription(resource).lower() in subscriptions)
        ]
        start = int(options.get("$skipToken") or 0)
        size = min(self.page_size, int(options.get("$top") or self.page_size))
        page = rows[start : start + size]
        answer: dict[str, Any] = {
            "totalRecords": len(rows),
            "count": len(page),
            "resultTruncated": "false",
            "data": page,
        }
        if start + size < len(rows):
            answer["$skipToken"] = str(start + size)
        return Response(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})


def _subscription(resource: Mapping[str, Any]) -> str:
    parts = str(resource.get("id", "")).split("/")
    return parts[2] if len(parts) > 2 and parts[1].lower() == "subscriptions" else ""
