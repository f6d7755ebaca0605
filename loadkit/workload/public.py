"""The workload as outputs may show it: run.json, the journal's header and
report.html keep the spec as written, but never a literal secret. A value
with a `${VAR}` reference stays (it names, it does not hold); a literal API key, token,
password or credential-bearing header becomes `***`, and every URL loses its
`user:password@` and its query's values (a signed media URL's signature)."""

from __future__ import annotations

import re
from typing import Any

from loadkit import envrefs
from loadkit.urls import MASK, without_credentials

# Keys whose value is a credential wherever they appear (api_key, agent_token, ...).
SECRET_KEY = re.compile(r"(api_?key|token|secret|password)$", re.IGNORECASE)
# Header names that carry one (Authorization, X-Api-Key, Cookie, X-Amz-Signature, ...).
SECRET_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|session|signature",
                           re.IGNORECASE)


def public_spec(value: Any, key: str = "") -> Any:
    """`value` (a spec dumped to JSON types) with its secrets masked."""
    if isinstance(value, dict):
        headers = key.lower().endswith("headers")
        return {k: _masked(v) if headers and SECRET_HEADER.search(k) else public_spec(v, k)
                for k, v in value.items()}
    if isinstance(value, list):
        return [public_spec(v, key) for v in value]
    if isinstance(value, str):
        if SECRET_KEY.search(key):
            return _masked(value)
        if value.startswith(("http://", "https://")):
            return without_credentials(value)
    return value


def _masked(value: Any) -> Any:
    if isinstance(value, str) and envrefs.names(value):  # `Bearer ${KEY}`: as written
        return value
    return MASK if isinstance(value, str) else public_spec(value)
