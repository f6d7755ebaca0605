"""`${VAR}` references to environment variables, found and resolved in one place.

Header values, tenant API keys and the telemetry agent token may name a
secret as `${NAME}`. The models keep the reference as written, so no output
ever holds the secret; it is substituted only in memory, when a request or a
poll is built.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from loadkit.errors import InputError

__all__ = ["ENV_REF", "is_reference", "missing", "names", "not_set", "resolve"]

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def names(text: str | None) -> set[str]:
    """The variables `text` names."""
    return set(ENV_REF.findall(text or ""))


def is_reference(text: str) -> bool:
    """Whether `text` is one `${VAR}` and nothing else (safe to write out)."""
    return ENV_REF.fullmatch(text) is not None


def missing(wanted: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """The variables of `wanted` that `environ` lacks, sorted."""
    return sorted(v for v in set(wanted) if v not in environ)


def not_set(name: str) -> str:
    return f"environment variable ${{{name}}} is not set"


def resolve(text: str, environ: Mapping[str, str], where: str) -> str:
    """`text` with each `${VAR}` substituted; InputError `where: environment
    variable ${VAR} is not set` for the first (by name) that is missing."""
    absent = missing(names(text), environ)
    if absent:
        raise InputError(f"{where}: {not_set(absent[0])}")
    return ENV_REF.sub(lambda m: environ[m.group(1)], text)
