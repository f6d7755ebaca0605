"""Tool calls and structured output: assembling calls from stream fragments,
and the checks that say whether the model's JSON is what was asked.

A call's arguments arrive in fragments (OpenAI `tool_calls` deltas, the
Responses API's `function_call_arguments.delta`, Anthropic's
`input_json_delta`); they are joined per call and judged once, at the end:
a call whose arguments are not a JSON object, or not valid against the
tool's declared parameters, is a failed check with the call as its example.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import orjson
from jsonschema import Draft202012Validator

from loadkit.engine.adapter import ParsedResponse, ProtocolError, ToolCall
from loadkit.workload.scenarios import ResponseFormat, Tool

MAX_ARGUMENTS = 1 << 20  # a call's arguments beyond this are a hostile stream


class ToolCalls:
    """The calls of one answer, assembled in the order they opened."""

    __slots__ = ("_calls", "_size")

    def __init__(self) -> None:
        self._calls: dict[Hashable, list[str]] = {}  # key -> [id, name, fragments...]
        self._size = 0

    def open(self, key: Hashable, call_id: object = None, name: object = None) -> None:
        call = self._calls.setdefault(key, ["", ""])
        if isinstance(call_id, str) and call_id:
            call[0] = call_id
        if isinstance(name, str) and name:
            call[1] = name

    def whole(self, key: Hashable, arguments: str) -> None:
        """The call's arguments as the server says them whole (they replace
        the fragments: a server may send both)."""
        call = self._calls.setdefault(key, ["", ""])
        del call[2:]
        self.add(key, arguments)

    def add(self, key: Hashable, fragment: object) -> None:
        if not isinstance(fragment, str) or not fragment:
            return
        self._size += len(fragment)
        if self._size > MAX_ARGUMENTS:
            raise ProtocolError(f"tool call arguments longer than {MAX_ARGUMENTS:,} characters")
        self._calls.setdefault(key, ["", ""]).append(fragment)

    def done(self, empty: str = "") -> tuple[ToolCall, ...]:
        """`empty`: the arguments of a call that streamed none (Anthropic: {})."""
        return tuple(ToolCall(c[0] or f"call_{i}", c[1], "".join(c[2:]) or empty)
                     for i, c in enumerate(self._calls.values()))

    def __bool__(self) -> bool:
        return bool(self._calls)


def arguments_text(value: object) -> str:
    """A whole (non-streamed) call's arguments as text: OpenAI sends a JSON
    string, Anthropic an object."""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode() if value is not None else ""


def json_document(text: str) -> object:
    """The JSON a text holds; ValueError when it holds none."""
    return orjson.loads(text)


ToolCheck = Callable[[ParsedResponse], str | None]


def tool_check(tools: list[Tool]) -> ToolCheck:
    """Each call names a declared tool and its arguments are a JSON object
    valid against that tool's parameters."""
    validators = {t.name: Draft202012Validator(t.parameters) for t in tools}

    def check(parsed: ParsedResponse) -> str | None:
        for call in parsed.tool_calls:
            if call.name not in validators:
                return f"tool call names {call.name[:40]!r}, not a declared tool"
            try:
                args = json_document(call.arguments)
            except ValueError:
                return (f"malformed tool call {call.name}: arguments are not JSON: "
                        f"{call.arguments[:80]!r}")
            if not isinstance(args, dict):
                return f"malformed tool call {call.name}: arguments are not a JSON object"
            if (error := _first_error(validators[call.name], args)) is not None:
                return f"tool call {call.name}: arguments do not match its parameters: {error}"
        return None
    return check


def format_check(rf: ResponseFormat) -> ToolCheck:
    """Structured output: the answer's text is JSON valid against the schema."""
    validator = Draft202012Validator(rf.schema_)

    def check(parsed: ParsedResponse) -> str | None:
        if parsed.tool_calls and not parsed.text:
            return None  # a turn that calls a tool answers later
        text = parsed.text or ""
        try:
            doc = json_document(text)
        except ValueError:
            return f"structured output is not JSON: {text[:80]!r}"
        if (error := _first_error(validator, doc)) is not None:
            return f"structured output does not match schema {rf.name}: {error}"
        return None
    return check


def _first_error(validator: Draft202012Validator, doc: object) -> str | None:
    error = next(iter(validator.iter_errors(doc)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "the document"
    return f"{where}: {error.message[:120]}"
