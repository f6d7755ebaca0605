"""A JSON answer's document, shared by every JSON dialect: not JSON, or an
error said with a 200 (`{"error": ...}`, OpenAI's form; Anthropic's
`{"type": "error", "error": ...}`), is a protocol failure that keeps the
server's own words."""

from __future__ import annotations

from typing import Any

import orjson

from loadkit.engine.adapter import ProtocolError


def error_said(error: object) -> str:
    """What an answer's `error` member says, for a failure's message."""
    said = error.get("message") if isinstance(error, dict) else error
    return f"error in answer: {str(said or error)[:200]}"


def answer_json(raw: bytes) -> Any:
    try:
        doc = orjson.loads(raw)
    except ValueError:
        raise ProtocolError(f"response is not JSON: {raw[:80]!r}") from None
    if isinstance(doc, dict) and doc.get("error") is not None:
        raise ProtocolError(error_said(doc["error"]))
    return doc
