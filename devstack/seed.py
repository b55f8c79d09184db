"""Seed a vault with a certificate the way users create one: Key Vault makes the key and CSR, the CA signs, merge;
or seed a whole fleet straight into the emulator's model (``seed_fleet``), for benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devstack.localca import LocalCAFiles, issue_leaf

__all__ = ["seed_certificate", "seed_fleet"]


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


def seed_fleet(
    emulator: Any,
    vault: str,
    names: Iterable[str],
    ca_files: LocalCAFiles,
    *,
    not_before: datetime,
    not_after: datetime,
    domain: str = "fleet.internal",
    tags: Mapping[str, str] | None = None,
) -> int:
    """Put certificates issued by the local CA (EC P-256 keys, issuer ``Unknown``, DNS name ``<name>.<domain>``)
    straight into ``vault`` of ``emulator`` (a ``KeyVaultEmulator``) through its seeding path, with no request;
    return how many. Each is what ``seed_certificate`` makes, in a fraction of a millisecond.

    Raises:
        KeyError: unknown vault.
        ValueError: a name is pending or deleted there, or the CA files are not readable.
    """
    issuing = x509.load_pem_x509_certificate(ca_files.issuing_cert_path.read_bytes())
    chain_der = [issuing.public_bytes(serialization.Encoding.DER)]
    count = 0
    for name in names:
        dns_name = f"{name}.{domain}"
        key = ec.generate_private_key(ec.SECP256R1())
        leaf = issue_leaf(
            ca_files,
            subject_cn=dns_name,
            dns_names=[dns_name],
            public_key=key.public_key(),
            not_before=not_before,
            not_after=not_after,
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode("ascii")
        emulator.seed(
            vault,
            name,
            policy={
                "key_props": {"kty": "EC", "crv": "P-256", "exportable": True, "reuse_key": False},
                "x509_props": {"subject": f"CN={dns_name}", "sans": {"dns_names": [dns_name]}},
                "issuer": {"name": "Unknown"},
            },
            leaf_der=leaf.public_bytes(serialization.Encoding.DER),
            chain_der=chain_der,
            key_pem=key_pem,
            tags=dict(tags) if tags is not None else None,
        )
        count += 1
    return count
