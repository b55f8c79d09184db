"""PEM certificates: one certificate as text, and a leaf's issuers put in order."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["order_chain", "pem"]


def pem(certificate: x509.Certificate) -> str:
    """One certificate as PEM text."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def order_chain(leaf: x509.Certificate, others: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """The issuers of ``leaf`` among ``others``, nearest first, by matching issuer to subject.

    The leaf itself and duplicates are dropped; certificates that do not chain up from the leaf are kept, in
    their given order, after the ones that do (a CA may send a cross-certificate we cannot place).
    """
    remaining: list[x509.Certificate] = []
    for certificate in others:
        if certificate != leaf and certificate not in remaining:
            remaining.append(certificate)
    ordered: list[x509.Certificate] = []
    current = leaf
    while True:
        parent = next((c for c in remaining if c.subject == current.issuer), None)
        if parent is None or current.issuer == current.subject:
            break
        ordered.append(parent)
        remaining.remove(parent)
        current = parent
    return (*ordered, *remaining)
