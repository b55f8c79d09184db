"""Real Key Vault traffic recorded by Microsoft's SDK test suites, and a shape comparison for our emulator's answers.

The recordings live in ``/work/shared/reference/recordings`` (``KV_RECORDINGS_DIR`` overrides it). Three formats occur:

* Azure test-proxy files (python-assets, rust, net): ``{"Entries": [{"RequestUri", "RequestMethod", "RequestBody",
  "StatusCode", "ResponseHeaders", "ResponseBody"}]}`` (``entries`` in some older files);
* C++ SDK files (cpp): ``{"networkCallRecords": [{"Method", "Url", "Response": {"STATUS_CODE", "BODY", …headers}}]}``
  with the body as a JSON string and no request body.

Use :func:`load_recording` to get :class:`RecordedCall` values and :func:`assert_same_shape` to compare a JSON
answer with a recorded one: same keys (recursively), same value types, values themselves free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "RECORDINGS_DIR",
    "RecordedCall",
    "assert_same_shape",
    "load_recording",
    "shape_differences",
]

RECORDINGS_DIR = Path(os.environ.get("KV_RECORDINGS_DIR", "/work/shared/reference/recordings"))


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One recorded request and the real service's answer.

    Attributes:
        method: upper-case HTTP method.
        path: URL path, percent-decoded, e.g. ``/certificates/name/pending``.
        query: query parameters (last value wins).
        request_body: the parsed JSON request body, ``None`` when empty or not recorded (cpp).
        status: the HTTP status code.
        headers: response headers, names lower-cased.
        body: the parsed JSON response body, ``None`` when empty.
    """

    method: str
    path: str
    query: dict[str, str]
    request_body: Any
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None

    @property
    def challenge(self) -> bool:
        """Whether this is the bodiless 401 that opens every SDK session (the shell answers it, not the model)."""
        return self.status == 401


def _parse_body(raw: object) -> Any:
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw
    return raw


def _split_url(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return unquote(parts.path), dict(parse_qsl(parts.query, keep_blank_values=True))


def load_recording(relative_path: str) -> list[RecordedCall]:
    """Load a recording file, e.g. ``"rust/get_certificate_operation.json"``, as a list of calls in order.

    Raises:
        FileNotFoundError: no such recording.
        ValueError: the file is in none of the known formats.
    """
    document = json.loads((RECORDINGS_DIR / relative_path).read_text(encoding="utf-8"))
    entries = document.get("Entries") or document.get("entries")
    calls: list[RecordedCall] = []
    if entries is not None:
        for entry in entries:
            path, query = _split_url(entry["RequestUri"])
            calls.append(
                RecordedCall(
                    method=entry["RequestMethod"].upper(),
                    path=path,
                    query=query,
                    request_body=_parse_body(entry.get("RequestBody")),
                    status=int(entry["StatusCode"]),
                    headers={k.lower(): str(v) for k, v in (entry.get("ResponseHeaders") or {}).items()},
                    body=_parse_body(entry.get("ResponseBody")),
                )
            )
        return calls
    records = document.get("networkCallRecords")
    if records is None:
        raise ValueError(f"{relative_path}: unknown recording format (keys {sorted(document)})")
    for record in records:
        path, query = _split_url(record.get("Url") or record["Uri"])
        response = record["Response"]
        headers = {k.lower(): str(v) for k, v in response.items() if k not in ("BODY", "STATUS_CODE", "REASON_PHRASE")}
        calls.append(
            RecordedCall(
                method=record["Method"].upper(),
                path=path,
                query=query,
                request_body=None,
                status=int(response["STATUS_CODE"]),
                headers=headers,
                body=_parse_body(response.get("BODY")),
            )
        )
    return calls


def _type_name(value: object) -> str:
    # bool before int: True is an int in Python but not on the wire.
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def shape_differences(actual: object, recorded: object, path: str = "$") -> list[str]:
    """List how ``actual`` differs in shape from ``recorded``: key sets of objects (recursively) and value types.

    Arrays are compared element by element over their common length (lengths may differ: one merged
    certificate or two versions are the same shape).
    """
    actual_type, recorded_type = _type_name(actual), _type_name(recorded)
    if actual_type != recorded_type:
        return [f"{path}: {actual_type} where the recording has {recorded_type}"]
    differences: list[str] = []
    if isinstance(actual, dict) and isinstance(recorded, dict):
        missing = sorted(set(recorded) - set(actual))
        extra = sorted(set(actual) - set(recorded))
        if missing:
            differences.append(f"{path}: missing keys {missing}")
        if extra:
            differences.append(f"{path}: unexpected keys {extra}")
        for key in sorted(set(actual) & set(recorded)):
            differences += shape_differences(actual[key], recorded[key], f"{path}.{key}")
    elif isinstance(actual, list) and isinstance(recorded, list):
        for index, (item, recorded_item) in enumerate(zip(actual, recorded, strict=False)):
            differences += shape_differences(item, recorded_item, f"{path}[{index}]")
    return differences


def assert_same_shape(actual_json: object, recorded_json: object) -> None:
    """Assert that an answer has the recorded answer's shape: same keys recursively, same JSON value types.

    Raises:
        AssertionError: listing every difference.
    """
    differences = shape_differences(actual_json, recorded_json)
    assert not differences, "shape differs from the recording:\n" + "\n".join(differences)
