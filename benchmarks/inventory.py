"""The CLI's inventory over a fleet in the Key Vault emulator (issue 14: "the CLI's inventory time for 1,000
certificates in the emulator").

Seeds N certificates (EC P-256, issued by the local CA) into one emulated vault, then runs ``renewal inventory
--json`` through ``renewal.cli.main`` as an operator would (the app's settings, Azurite for the journal), and the
listing-only ``plan`` for comparison. Prints the wall time of each and the Key Vault requests each made: the
inventory costs the listing (25 certificates a page) plus one read per certificate; ``plan`` the listing alone.

Run: ``.venv/bin/python -m benchmarks.inventory [--certificates 1000] [--workers 8]``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--certificates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="the inventory's concurrent reads")
    args = parser.parse_args()

    from azure.keyvault.certificates import CertificatePolicy, KeyCurveName, KeyType
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from devstack.azurite import Azurite
    from devstack.keyvault import KeyVaultEmulator
    from devstack.localca import create_local_ca, issue_leaf
    from renewal.cli import main as cli

    names = [f"inv{index:04d}" for index in range(args.certificates)]
    with tempfile.TemporaryDirectory() as tmp:
        ca = create_local_ca(Path(tmp) / "ca")
        with (
            Azurite() as azurite,
            KeyVaultEmulator(state_dir=Path(tmp) / "kv", vaults=["fleet"], tick_interval=None) as emulator,
        ):
            environ = {
                "RENEWAL_JOURNAL_CONNECTION": azurite.connection_string,
                "RENEWAL_VAULTS": f"fleet={emulator.url('fleet')}",
                "RENEWAL_KEYVAULT_CA_BUNDLE": str(emulator.ca_pem_path),
                "RENEWAL_KEYVAULT_STATIC_TOKEN": "inventory-token",
                "RENEWAL_CA_PROFILES": json.dumps({"corp": ca.profile_options()}),
                "RENEWAL_DEFAULT_CA_PROFILE": "corp",
            }
            client = emulator.certificate_client("fleet")
            now = datetime.fromtimestamp(emulator.clock(), UTC)
            issuing = x509.load_pem_x509_certificate(ca.issuing_cert_path.read_bytes())
            der = serialization.Encoding.DER

            def seed(index_name: tuple[int, str]) -> None:
                index, name = index_name
                policy = CertificatePolicy(
                    issuer_name="Unknown",
                    subject=f"CN={name}.fleet.internal",
                    san_dns_names=[f"{name}.fleet.internal"],
                    key_type=KeyType.ec,
                    key_curve_name=KeyCurveName.p_256,
                )
                operation = client.begin_create_certificate(name, policy).result()
                csr = x509.load_der_x509_csr(bytes(operation.csr))
                leaf = issue_leaf(
                    ca,
                    subject_cn=f"{name}.fleet.internal",
                    dns_names=[f"{name}.fleet.internal"],
                    public_key=csr.public_key(),
                    not_before=now - timedelta(days=30),
                    not_after=now + timedelta(days=30 + index % 365),
                )
                client.merge_certificate(name, [leaf.public_bytes(der), issuing.public_bytes(der)])

            seeding = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(seed, enumerate(names)))
            print(f"seeded {len(names)} certificates (EC P-256) in {time.monotonic() - seeding:.1f} s", flush=True)

            def timed(*argv: str) -> tuple[float, int, int, str]:
                emulator.request_log.clear()
                out, err = io.StringIO(), io.StringIO()
                started = time.monotonic()
                code = cli(list(argv), environ=environ, stdout=out, stderr=err)
                elapsed = time.monotonic() - started
                return elapsed, code, emulator.request_log.authenticated_requests(vault="fleet"), out.getvalue()

            elapsed, code, requests, out = timed("inventory", "--json", "--quiet", "--workers", str(args.workers))
            rows = len(json.loads(out)["certificates"])
            pages = math.ceil(len(names) / 25)
            print(
                f"inventory: {rows} certificates in {elapsed:.2f} s (exit {code}, {args.workers} concurrent reads); "
                f"{requests} Key Vault requests (listing {pages} pages + {len(names)} reads = {pages + len(names)})",
                flush=True,
            )
            elapsed, code, requests, out = timed("plan", "--days", "30", "--json")
            print(
                f"plan --days 30: {len(json.loads(out)['renewals'])} rows in {elapsed:.2f} s (exit {code}); "
                f"{requests} Key Vault requests (the listing alone: {pages} pages)",
                flush=True,
            )


if __name__ == "__main__":
    main()
