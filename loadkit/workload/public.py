"""The workload as outputs may show it: run.json, the journal's header and
report.html keep the spec as written, but never a literal secret. A value
that is `${VAR}` references, with at most a scheme word before them
(`Bearer ${KEY}`), stays: it names, it does not hold. A literal API key,
token, password or credential-bearing header becomes `***`, and every URL,
or path with a query, loses its `user:password@` and its query's values (a
signed media URL's signature, a `?key=` in a path)."""

from __future__ import annotations

import re
from typing import Any

from loadkit import envrefs
from loadkit.urls import MASK, masked_query, without_credentials

# Keys whose value is a credential wherever they appear (api_key, agent_token, ...);
# not every `*_token` (a tokenizer's eos_token is none).
SECRET_KEY = re.compile(r"^((.*_)?(api_?key|secret|password|passwd|credentials?)|"
                        r"((access|auth|agent|bearer|api|id)_?)?token|pass)$", re.IGNORECASE)
# Header names that carry one (Authorization, X-Api-Key, Cookie, X-Amz-Credential, ...).
SECRET_HEADER = re.compile(r"auth|key|token|secret|passw|cookie|session|signature|credential",
                           re.IGNORECASE)
# What may stand beside `${VAR}` references in a value kept as written.
SCHEME = re.compile(r"\s*(Bearer|Basic|Token|Bot)?\s*", re.IGNORECASE)


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
        if key == "path" and "?" in value:
            path, _, query = value.partition("?")
            return f"{path}?{masked_query(query)}"
    return value


def _masked(value: Any) -> Any:
    if not isinstance(value, str):
        return public_spec(value)
    return value if envrefs.names(value) and SCHEME.fullmatch(
        envrefs.ENV_REF.sub("", value)) else MASK
