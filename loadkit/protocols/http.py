"""Generic JSON HTTP requests: any method, path, headers and body.

Success is a 2xx status (checked by the engine); the body is not interpreted.
"""

from __future__ import annotations

import json

from loadkit.engine.adapter import ParsedResponse, PreparedRequest
from loadkit.workload.models import HttpScenario


def prepare(scenario: HttpScenario, headers: dict[str, str], seed: int) -> PreparedRequest:
    body = None
    if scenario.body is not None:
        body = json.dumps(scenario.body).encode()
        headers = {"Content-Type": "application/json", **headers}
    return PreparedRequest(method=scenario.method, path=scenario.request_path,
                           headers=headers, body=body, stream=False,
                           new_stream_parser=None, parse_body=_ignore)


def _ignore(raw: bytes) -> ParsedResponse:
    return ParsedResponse()
