"""Generic JSON HTTP requests: any method, path, headers and body.

Success is a 2xx status (or the statuses the checks name); the body is parsed
only when a check needs it.
"""

from __future__ import annotations

import json

import orjson

from loadkit.engine.adapter import ParsedResponse, PreparedRequest, ProtocolError
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.workload.scenarios import HttpScenario


def prepare(scenario: HttpScenario, headers: dict[str, str]) -> PreparedRequest:
    body = None
    if scenario.body is not None:
        body = json.dumps(scenario.body).encode()
        headers = {"Content-Type": "application/json", **headers}
    checks = scenario.checks
    parse = _parse_json if checks.json_path else _parse_text if checks.regex else _ignore
    return PreparedRequest(method=scenario.method, path=scenario.request_path,
                           headers=headers, build_body=lambda p, m, seq, blocks=(): (body, None),
                           new_stream_parser=None, parse_body=parse,
                           check=make_check(scenario.checks),
                           ok_status=ok_statuses(scenario.checks.status))


def _ignore(raw: bytes) -> ParsedResponse:
    return ParsedResponse()


def _parse_text(raw: bytes) -> ParsedResponse:
    return ParsedResponse(text=raw.decode("utf-8", "replace"))


def _parse_json(raw: bytes) -> ParsedResponse:
    try:
        doc = orjson.loads(raw) if raw else None
    except ValueError:
        raise ProtocolError(f"response is not JSON: {raw[:80]!r}") from None
    return ParsedResponse(text=raw.decode("utf-8", "replace"), doc=doc)
