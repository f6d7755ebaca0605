"""Response checks: is the model returning sensible output?

A check sees the status and the parsed answer and says why it fails, or
None. The engine records a failure as `check_failed`, with the reason kept as
an example for the report.
"""

from __future__ import annotations

import re

import jmespath

from loadkit.engine.adapter import Check, ParsedResponse
from loadkit.protocols.tools import ToolCheck, format_check, tool_check
from loadkit.workload.scenarios import Checks, ResponseFormat, Tool


def ok_statuses(status: list[int] | int | None) -> frozenset[int] | None:
    """The statuses a check accepts; None means any 2xx."""
    if status is None:
        return None
    return frozenset([status] if isinstance(status, int) else status)


def make_check(checks: Checks, tools: list[Tool] | None = None,
               response_format: ResponseFormat | None = None) -> Check | None:
    """Compile a scenario's checks into one function (None when there are
    none). Declared tools and a response format check themselves: a
    malformed call or invalid structured output is a failed check."""
    paths = [(c, jmespath.compile(c.path), re.compile(c.matches) if c.matches else None)
             for c in checks.json_path]
    regex = re.compile(checks.regex) if checks.regex else None
    min_tokens = checks.min_output_tokens
    shaped: list[ToolCheck] = ([tool_check(tools)] if tools else []) + \
        ([format_check(response_format)] if response_format is not None else [])
    if not paths and regex is None and min_tokens is None and not shaped:
        return None

    def check(status: int, parsed: ParsedResponse) -> str | None:
        for judge in shaped:
            if (why := judge(parsed)) is not None:
                return why
        for spec, expr, pattern in paths:
            found = expr.search(parsed.doc) if parsed.doc is not None else None
            if found is None:
                return f"JSON path {spec.path!r} found nothing"
            if spec.equals is not None and found != spec.equals:
                return f"JSON path {spec.path!r} is {str(found)[:80]!r}, not {spec.equals!r}"
            if pattern is not None and not pattern.search(str(found)):
                return f"JSON path {spec.path!r} = {str(found)[:80]!r} does not match {pattern.pattern!r}"
        if regex is not None and not parsed.tool_calls and not regex.search(parsed.text or ""):
            return f"generated text {(parsed.text or '')[:80]!r} does not match {regex.pattern!r}"
        if min_tokens is not None and (parsed.output_tokens or 0) < min_tokens:
            return f"{parsed.output_tokens or 0} output tokens, fewer than {min_tokens}"
        return None
    return check
