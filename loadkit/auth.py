"""The bearer token the agent's and the run's /metrics servers ask for."""

from __future__ import annotations

import hmac

__all__ = ["authorized"]


def authorized(header: str | None, token: str | None) -> bool:
    """True without a token; else the Authorization header must carry it
    (compared in constant time)."""
    return not token or hmac.compare_digest((header or "").encode(),
                                            f"Bearer {token}".encode())
