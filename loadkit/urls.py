"""Credentials in URLs: scrubbed for every output, turned into a header for requests.

A user may write `http://user:password@host:8000` for the target, the
telemetry agent or a Prometheus endpoint. The secret is sent (HTTP Basic, as
curl and aiohttp do) but never shown: run.json, reports, messages and series
names hold :func:`without_credentials` of the URL.

What a shown URL keeps and loses:

* `user:password@` goes; the *last* `@` of the authority ends it, so an
  unencoded `@` in a password leaks nothing.
* scheme, host and port stay as written, and so does the path.
* every query value becomes `***`, the parameter names stay: a query is where
  servers take keys (`?api_key=...`, `?token=...`), and no list of "secret"
  names is ever complete; the names still say what was sent. A parameter
  without `=` is masked whole.
* the fragment goes: it is never sent, so it says nothing about the run, and
  it is where OAuth puts tokens (`#access_token=...`).
* a URL that does not parse, or whose port is no number, is shown as
  `scheme://***`: a raw `/`, `?` or `#` in a password (RFC 3986 wants %2F,
  %3F, %23) splits the URL there, and what follows may be the rest of it.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["authority", "base_url", "basic_authorization", "doubled_v1", "http_url",
           "without_credentials"]

MASK = "***"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def http_url(url: str, example: str = "http://127.0.0.1:8000") -> str:
    """`url` without a trailing `/`, or ValueError saying why it cannot be
    requested: not http(s), no host, whitespace in it, a host that does not
    parse (`http://[::1`) or a port that is no number from 1 to 65535."""
    bad = f"must be an http:// or https:// URL such as {example}"
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(bad)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # `[::1`, `:99999`, `:abc`; its words may quote a password
        raise ValueError(f"{bad}: its host or port does not parse (a port is 1 to "
                         "65535; a `/`, `?` or `#` in a password is written %2F, %3F, "
                         "%23)") from None
    if not parts.hostname or any(c.isspace() for c in url) or port == 0:
        raise ValueError(f"{bad}: no host and port to connect to in it")
    return url.rstrip("/")


def base_url(url: str, example: str = "http://127.0.0.1:8000") -> str:
    """A URL that paths go after (a target, an agent): `http_url`, and no
    query or fragment (`?x=1` would end up before `/v1/models`)."""
    url = http_url(url, example)
    parts = urlsplit(url)
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(f"must be a base URL such as {example}, without a query (`?...`) "
                         "or fragment: each request's path is added after it")
    return url


def doubled_v1(url: str) -> str:
    """A hint for a 404 when the target ends in /v1, which loadkit adds itself
    (`http://host:8000/v1` asks for /v1/v1/models); "" otherwise. Shown, so
    without credentials."""
    shown = without_credentials(url).rstrip("/")
    if urlsplit(shown).path.endswith("/v1"):
        return ("the target ends in /v1, and loadkit adds /v1/... itself: drop it "
                f"(--target {shown[:-3]}); ")
    return ""


def authority(url: str) -> str:
    """`host[:port]` as written, without `user:password@` (the Host header)."""
    return _without_userinfo(urlsplit(url).netloc)


def basic_authorization(url: str) -> str | None:
    """The `Authorization: Basic ...` value for `user:password@` in the URL, else None."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def without_credentials(url: str) -> str:
    """The URL as it may be shown or saved (see the module's docstring)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is no number
    except ValueError:
        scheme = _SCHEME.match(url)
        return (scheme.group(0) if scheme else "") + MASK
    return urlunsplit((parts.scheme, _without_userinfo(parts.netloc), parts.path,
                       masked_query(parts.query), ""))


def _without_userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[2]  # the last `@`: a raw one may be in the password


def masked_query(query: str) -> str:
    """A query with its values masked (`key=***&alt=***`)."""
    return "&".join(f"{name}={MASK}" if sep else MASK
                    for name, sep, _ in (p.partition("=") for p in query.split("&") if p))
