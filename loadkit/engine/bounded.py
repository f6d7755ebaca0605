"""An HTTP answer loadkit reads whole (control plane: the model list, a
telemetry scrape), read to a size limit and a time limit.

A /metrics page, an agent's samples or a model list are kilobytes; an
endpoint that answers without end (a misrouted download, a hostile server)
must not make loadkit read it all into memory, and one that trickles a byte
at a time must not hold it forever (httpx's read timeout is per read). The
body is streamed and reading stops at either limit (the decoded bytes count:
a compressed answer too).
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from loadkit.errors import AnswerTooLarge

MAX_SCRAPE_BYTES = 16 * 1024 * 1024


def read_bounded(resp: httpx.Response, limit: int = MAX_SCRAPE_BYTES,
                 within_s: float | None = None) -> bytes:
    """The body of a streamed response: AnswerTooLarge past `limit` bytes,
    httpx.ReadTimeout when it is not whole `within_s` seconds from now."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise AnswerTooLarge(limit, int(declared))
    deadline = None if within_s is None else time.monotonic() + within_s
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        chunks.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise httpx.ReadTimeout(f"the answer was not whole within {within_s:g} s",
                                    request=resp.request)
    return b"".join(chunks)


def get_bounded(client: httpx.Client, url: str, limit: int = MAX_SCRAPE_BYTES,
                within_s: float | None = None, **kwargs: Any) -> tuple[bytes, str]:
    """GET `url`: its body and charset. Raises httpx.HTTPStatusError on a
    status other than 2xx (its body unread), AnswerTooLarge past `limit`,
    httpx.ReadTimeout past `within_s`, and httpx.HTTPError as httpx does."""
    with client.stream("GET", url, **kwargs) as resp:
        resp.raise_for_status()
        return read_bounded(resp, limit, within_s), resp.charset_encoding or "utf-8"
