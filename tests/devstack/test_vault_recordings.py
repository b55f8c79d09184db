"""The vault model replays recorded Key Vault scenarios: same status codes, same JSON shapes, same error texts.

Each test walks one recording from ``/work/shared/reference/recordings`` (see ``recordings.py``), sends the model the
same requests (recorded request bodies where they were stored) and compares every answer with the recorded one.
Certificate names are the recorded ones, so error messages must match character for character.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.devstack.recordings import RecordedCall, assert_same_shape, load_recording, shape_differences
from tests.devstack.vault_harness import Harness, TestCA, b64, body_of, der

PYTHON_MERGE = "python-assets/test_merge_certificate.pyTestMergeCertificatetest_merge_certificate[2025-07-01].json"
PYTHON_CANCEL = (
    "python-assets/test_certificates_client.pyTestCertificateClienttest_async_request_cancellation_and_deletion"
    "[2025-07-01].json"
)
PYTHON_40X = "python-assets/test_certificates_client.pyTestCertificateClienttest_40x_handling[2025-07-01].json"

# The C++ SDK does not store request bodies; its tests create "CN=xyz" Self certificates with empty EKUs and tags.
CPP_POLICY = {"policy": {"x509_props": {"subject": "CN=xyz", "ekus": []}, "issuer": {"name": "Self"}}, "tags": {}}


def calls_of(recording: str) -> list[RecordedCall]:
    """The authenticated calls of a recording (the 401 challenge is the shell's business)."""
    return [call for call in load_recording(recording) if not call.challenge]


def replay(kv: Harness, call: RecordedCall, body: object = None, **query: str) -> Any:
    """Send the recorded request (its own body unless one is given) and check status and shape against the recording."""
    sent = call.request_body if body is None else body
    answer = kv.call(call.method, call.path, sent, params={**call.query, **query})
    assert answer.status == call.status, (call.method, call.path, answer.body)
    if call.body is not None:
        assert_same_shape(answer.body, call.body)
    if isinstance(call.body, dict) and "error" in call.body:
        assert answer.body == call.body
    return answer


def test_shape_helper_reports_missing_extra_and_type_differences() -> None:
    """assert_same_shape fails on a missing key, an extra key, or a type change (bool is not an integer)."""
    recorded = {"a": 1, "b": {"c": True}, "d": [{"e": "x"}]}
    assert shape_differences({"a": 2, "b": {"c": False}, "d": [{"e": "y"}, {"e": "z"}]}, recorded) == []
    assert shape_differences({"a": 1, "b": {"c": True}, "d": [], "f": 0}, recorded) == ["$: unexpected keys ['f']"]
    assert shape_differences({"a": True, "b": {}, "d": [{"e": 1}]}, recorded) == [
        "$.a: boolean where the recording has integer",
        "$.b: missing keys ['c']",
        "$.d[0].e: integer where the recording has string",
    ]
    with pytest.raises(AssertionError, match="missing keys"):
        assert_same_shape({}, recorded)


def test_every_recording_loads_with_methods_paths_and_statuses() -> None:
    """The loader reads all three recording formats into calls with a method, a path and a status."""
    for recording in (
        PYTHON_MERGE,
        "rust/create_invalid_certificate.json",
        "cpp/KeyVaultCertificateClientTest.CreateCertificate.json",
    ):
        calls = load_recording(recording)
        assert calls
        assert all(c.method in {"GET", "POST", "PATCH", "DELETE", "PUT"} for c in calls)
        assert all(c.path.startswith("/") and 200 <= c.status < 600 for c in calls)
    cpp = load_recording("cpp/KeyVaultCertificateClientTest.CreateCertificate.json")
    assert cpp[0].headers["retry-after"] == "10"
    assert cpp[-1].status == 204
    assert cpp[-1].body is None


def test_python_merge_flow() -> None:
    """python-assets merge: 202 pending op, 200 GET pending with Retry-After, 201 merge of a double-base64 x5c."""
    kv, ca = Harness(), TestCA()
    create, get_pending, merge = calls_of(PYTHON_MERGE)
    created = replay(kv, create)
    assert created.headers["Retry-After"] == "10"
    assert "Location" in created.headers
    assert body_of(created)["status_details"] == create.body["status_details"]
    pending = replay(kv, get_pending)
    assert pending.headers == {"Retry-After": "10"}
    csr = kv.csr("livekvtestmergeCertificate7c443357")
    leaf = ca.sign(csr, not_before=1774739258, not_after=1774739318)
    # The recorded x5c item is base64 of the base64-DER text; send it the same way.
    merged = replay(kv, merge, {"x5c": [b64(b64(der(leaf)).encode())]})
    body = body_of(merged)
    assert body["attributes"]["nbf"] == 1774739258
    assert body["attributes"]["exp"] == 1774739318
    assert body["policy"]["x509_props"] == merge.body["policy"]["x509_props"]
    assert body["policy"]["lifetime_actions"] == merge.body["policy"]["lifetime_actions"]
    assert body["policy"]["issuer"] == merge.body["policy"]["issuer"]


def test_python_cancellation_and_deletion() -> None:
    """python-assets cancellation: cancel, cancelled, delete op, 404 pending, delete certificate, deleted bundle.

    The recording uses issuer Self, which this model completes at once; the same sequence is replayed with issuer
    Unknown (identical operation shape), and the recording's transient 404 on the deleted certificate is skipped.
    """
    kv = Harness()
    calls = calls_of(PYTHON_CANCEL)
    create, get_pending, cancel, read1, read2, delete_op, gone, delete_cert, deleted_404, deleted = calls
    unknown = {"policy": {**create.request_body["policy"], "issuer": {"name": "Unknown"}}}
    replay(kv, create, unknown)
    replay(kv, get_pending)
    cancelled = replay(kv, cancel)
    assert body_of(cancelled)["cancellation_requested"] is True
    assert body_of(cancelled)["status"] == "inProgress"
    for read in (read1, read2):
        assert body_of(replay(kv, read))["status"] == "cancelled"
    replay(kv, delete_op)
    replay(kv, gone)
    deleted_body = body_of(replay(kv, delete_cert))
    assert deleted_body["attributes"]["enabled"] is False
    assert deleted_404.status == 404  # eventual consistency in the real service; the model is consistent at once
    assert body_of(replay(kv, deleted)) == deleted_body


def test_python_40x_handling() -> None:
    """python-assets 40x: GET latest of an unknown name answers the recorded 404 verbatim."""
    (call,) = calls_of(PYTHON_40X)
    replay(Harness(), call)


def test_rust_invalid_name() -> None:
    """rust create_invalid_certificate: the recorded 400 BadParameter verbatim."""
    (call,) = calls_of("rust/create_invalid_certificate.json")
    replay(Harness(), call)


def test_rust_get_certificate_operation() -> None:
    """rust get_certificate_operation: Self create, completed operation shape, latest bundle shape."""
    kv = Harness()
    create, get_op, get_latest = calls_of("rust/get_certificate_operation.json")
    replay(kv, create)
    replay(kv, get_op)
    latest = body_of(replay(kv, get_latest))
    assert latest["policy"]["lifetime_actions"] == get_latest.body["policy"]["lifetime_actions"]


@pytest.mark.parametrize(
    "recording",
    [
        "cpp/KeyVaultCertificateClientTest.GetCertificate.json",
        "cpp/KeyVaultCertificateClientTest.GetCertificateVersion.json",
        "cpp/KeyVaultCertificateClientTest.GetCertificatePolicy.json",
        "cpp/KeyVaultCertificateClientTest.UpdateCertificatePolicy.json",
        "cpp/KeyVaultCertificateClientTest.GetPropertiesOfCertificateVersions.json",
        "cpp/KeyVaultCertificateClientTest.CreateCertificate.json",
        "cpp/KeyVaultCertificateClientTest.CreateCertificateResumeToken.json",
        "cpp/KeyVaultCertificateClientTest.DeleteWrongCertificate.json",
    ],
)
def test_cpp_scenarios(recording: str) -> None:
    """cpp scenarios (Self create, latest without slash, versions, policy get/patch, soft delete, purge) replay.

    Polls of the pending op that were still inProgress in the recording are skipped (the model completes Self at
    once), and so is the transient 404 right after a delete; versioned GETs use the model's own version ids.
    """
    kv = Harness()
    versions: list[str] = []
    calls = calls_of(recording)
    for index, call in enumerate(calls):
        if call.method == "POST" and call.path.endswith("/create"):
            replay(kv, call, CPP_POLICY)
            continue
        if call.path.endswith("/pending") and call.body.get("status") == "inProgress":
            continue
        if call.path.startswith("/deletedcertificates/") and call.status == 404 and index + 1 < len(calls):
            continue
        if call.method == "PATCH" and call.path.endswith("/policy"):
            replay(kv, call, {"x509_props": {"subject": "CN=twa", "validity_months": 8}})
            continue
        path = call.path
        segments = path.strip("/").split("/")
        if len(segments) == 3 and len(segments[2]) == 32 and call.method == "GET":
            path = f"/certificates/{segments[1]}/{versions[-1]}"
        answer = replay(kv, RecordedCall(call.method, path, call.query, None, call.status, call.headers, call.body))
        if isinstance(answer.body, dict) and "kid" in answer.body and "recoveryId" not in answer.body:
            versions.append(answer.body["id"].rsplit("/", 1)[1])


def test_net_placeholder_while_pending() -> None:
    """net VerifyCertificateGetWithPolicyInProgress: placeholder latest (policy, pending), versioned id+attributes."""
    kv = Harness()
    create, get_latest, get_version = calls_of("net/VerifyCertificateGetWithPolicyInProgress.json")
    created = replay(kv, create)
    assert "request_id=" in created.headers["Location"]
    latest = body_of(replay(kv, get_latest))
    assert latest["policy"]["x509_props"]["key_usage"] == get_latest.body["policy"]["x509_props"]["key_usage"]
    assert latest["attributes"]["enabled"] is False
    version = latest["id"].rsplit("/", 1)[1]
    replay(kv, RecordedCall("GET", f"/certificates/96831500/{version}", {}, None, 200, {}, get_version.body))


def test_net_invalid_policy_error_text() -> None:
    """net StartCreateCertificateError: the recorded invalid-DN 400 verbatim, CRLF included."""
    (call,) = calls_of("net/StartCreateCertificateError.json")
    replay(Harness(), call)


def test_recorded_merge_leaf_is_accepted_against_its_own_csr_key() -> None:
    """The x5c item recorded in the python merge decodes (double base64) to the recorded cer."""
    from devstack.keyvault._crypto import decode_x5c

    merge = calls_of(PYTHON_MERGE)[2]
    (leaf,) = decode_x5c(merge.request_body["x5c"])
    assert base64.b64encode(der(leaf)).decode() == merge.body["cer"]
