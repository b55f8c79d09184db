"""Seed a vault with a certificate the way users create one: Key Vault makes the key and CSR, the CA signs, merge."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devstack.localca import LocalCAFiles, issue_leaf

__all__ = ["seed_certificate"]


def seed_certificate(
    client: Any,
    name: str,
    ca_files: LocalCAFiles,
    *,
    dns_names: Sequence[str],
    not_before: datetime,
    not_after: datetime,
    tags: Mapping[str, str] | None = None,
    validity_months: int = 12,
) -> x509.Certificate:
    """Create ``name`` with issuer ``Unknown`` through ``client`` (an SDK ``CertificateClient``), sign its CSR with
    the local CA for the given validity, and merge the leaf with its issuing CA; return the leaf.

    Raises:
        azure.core.exceptions.HttpResponseError: Key Vault refused a step.
    """
    from azure.keyvault.certificates import CertificatePolicy

    policy = CertificatePolicy(
        issuer_name="Unknown",
        subject=f"CN={dns_names[0]}",
        san_dns_names=list(dns_names),
        validity_in_months=validity_months,
    )
    operation = client.begin_create_certificate(name, policy, tags=dict(tags or {})).result()
    csr = x509.load_der_x509_csr(bytes(operation.csr))
    leaf = issue_leaf(
        ca_files,
        subject_cn=dns_names[0],
        dns_names=list(dns_names),
        public_key=csr.public_key(),
        not_before=not_before,
        not_after=not_after,
    )
    issuing = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    client.merge_certificate(
        name,
        [leaf.public_bytes(serialization.Encoding.DER), issuing.public_bytes(serialization.Encoding.DER)],
        tags=dict(tags or {}),
    )
    return leaf
