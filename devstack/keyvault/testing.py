"""Helpers for tests that drive the emulator with the real Azure SDK."""

from __future__ import annotations

import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

__all__ = ["StaticTokenCredential"]


class StaticTokenCredential:
    """A credential whose ``get_token`` always returns the same bearer token, valid for an hour from the call.

    The emulator only checks that a bearer token is present (or equals the one it was started with), so no
    identity provider is needed. ``requests`` counts the tokens handed out.
    """

    def __init__(
        self,
        token: str = "devstack-token",  # noqa: S107 (a fake token for a local emulator)
        *,
        lifetime_seconds: int = 3600,
    ) -> None:
        self._token = token
        self._lifetime = lifetime_seconds
        self._lock = threading.Lock()
        self.requests = 0

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return the token, expiring ``lifetime_seconds`` from now (real time)."""
        with self._lock:
            self.requests += 1
        return AccessToken(self._token, int(time.time()) + self._lifetime)

    def close(self) -> None:
        """Do nothing; present because the SDK may close credentials it was given."""

    def __repr__(self) -> str:
        return "StaticTokenCredential(token=<redacted>)"
