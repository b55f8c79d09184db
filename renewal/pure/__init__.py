"""Pure decisions: no I/O, no Azure SDK, no HTTP client (an import-linter contract in pyproject.toml keeps it so).

``intake`` reads an event, ``plan`` decides renew / resume / skip, ``window`` says when a version is due,
``verify`` checks a CA's answer, ``payloads`` builds a notification, ``backoff`` spaces retries, ``redact``
scrubs outside text, ``tags`` and ``schedule`` read the certificate's tags and the sweep's cadence.
"""
