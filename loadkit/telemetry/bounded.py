"""A telemetry scrape's body, read to a limit.

A /metrics page or an agent's samples are kilobytes; an endpoint that
answers without end (a misrouted download, a hostile server) must not make
the sampler read it all into memory. The body is streamed and reading stops
at the limit (the decoded bytes count: a compressed answer too).
"""

from __future__ import annotations

from typing import Any

import httpx

from loadkit.errors import AnswerTooLarge

MAX_SCRAPE_BYTES = 16 * 1024 * 1024


def get_bounded(client: httpx.Client, url: str, limit: int = MAX_SCRAPE_BYTES,
                **kwargs: Any) -> tuple[bytes, str]:
    """GET `url`: its body and charset. Raises httpx.HTTPStatusError on a
    status other than 2xx (its body unread), AnswerTooLarge past `limit`, and
    httpx.HTTPError as httpx does."""
    with client.stream("GET", url, **kwargs) as resp:
        resp.raise_for_status()
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise AnswerTooLarge(limit, int(declared))
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise AnswerTooLarge(limit)
            chunks.append(chunk)
        return b"".join(chunks), resp.charset_encoding or "utf-8"
