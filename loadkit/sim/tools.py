"""JSON documents that a schema asks for: a tool call's arguments and a
structured-output answer, cut into exactly the answer's tokens.

:func:`document` builds a value valid against a JSON schema (objects with
every property, arrays of one item or ``minItems``, enums and consts their
first value, strings a vocabulary word, numbers and integers a number within
the bounds, booleans true), serialised as JSON lexical tokens.
:func:`spread` lays those out over ``n`` stream fragments: several characters
to a fragment when the document is longer than ``n``, else one lexical token
per fragment and single spaces between them (whitespace any JSON parser
skips) for the rest.  The invalid variants: the last lexical token cut
(never valid JSON), or an object's first required property left out (valid
JSON, not valid against its schema).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii
from typing import Any

CUT = "cut"  # the document ends before its last lexical token
MISSING = "missing"  # a required property is left out

_MAX_DEPTH = 16  # deeper (or recursive) schemas get a plain string
_FORMATS = {"date-time": "2025-01-01T00:00:00Z", "date": "2025-01-01", "time": "00:00:00Z",
            "uuid": "00000000-0000-4000-8000-000000000000", "ipv4": "192.0.2.1",
            "ipv6": "2001:db8::1", "hostname": "example.com", "duration": "P1D"}


class _Words:
    """A cycling source of vocabulary words, and of numbers that vary with them."""

    __slots__ = ("_i", "_words")

    def __init__(self, words: tuple[str, ...]) -> None:
        self._words = tuple(w.strip() for w in words) or ("word",)
        self._i = 0

    def next(self) -> str:
        word = self._words[self._i % len(self._words)]
        self._i += 1
        return word

    def number(self) -> int:
        self._i += 1
        return 1 + (self._i * 7) % 100


def document(schema: Mapping[str, Any], words: tuple[str, ...],
             invalid: str | None = None) -> list[str]:
    """The JSON lexical tokens of a document for ``schema`` (``invalid``: None,
    CUT or MISSING; MISSING without a required property to leave out cuts)."""
    source = _Words(words)
    value = _value(schema, schema, source, 0)
    if invalid == MISSING:
        required = _required(_resolved(schema, schema))
        present = [name for name in required if isinstance(value, dict) and name in value]
        if present:
            assert isinstance(value, dict)
            del value[present[0]]
            return _lexemes(value)
        invalid = CUT
    lexemes = _lexemes(value)
    return lexemes[:-1] if invalid == CUT else lexemes


def spread(lexemes: list[str], n: int) -> list[str]:
    """Exactly ``n`` non-empty fragments whose concatenation is the document,
    padded with single spaces between its lexical tokens when it is short."""
    k = len(lexemes)
    if k == 0:
        return [" "] * n
    if k >= n:
        text = "".join(lexemes)
        size = len(text)  # >= k >= n: every fragment gets a character
        return [text[size * j // n:size * (j + 1) // n] for j in range(n)]
    pads, out = n - k, []
    for j, lexeme in enumerate(lexemes):
        out.append(lexeme)
        out += [" "] * ((j + 1) * pads // k - j * pads // k)
    return out


def encoded(fragments: list[str]) -> tuple[bytes, ...]:
    """Each fragment as a JSON string literal, ready to splice into an event."""
    memo: dict[str, bytes] = {}
    out = []
    for f in fragments:
        literal = memo.get(f)
        if literal is None:
            literal = memo[f] = encode_basestring_ascii(f).encode()
        out.append(literal)
    return tuple(out)


def is_valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- private helpers ---------------------------------------------------------------------


def _resolved(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with a local ``$ref`` (``#/$defs/X``, ``#/definitions/X``) followed."""
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < 8:
        node: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            if not part:
                continue
            node = node.get(part.replace("~1", "/").replace("~0", "~")) \
                if isinstance(node, Mapping) else None
        schema, seen = node, seen + 1
    return schema if isinstance(schema, Mapping) else {}


def _required(schema: Mapping[str, Any]) -> list[str]:
    req = schema.get("required")
    return [r for r in req if isinstance(r, str)] if isinstance(req, list) else []


def _type(schema: Mapping[str, Any]) -> str:
    t = schema.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), t[0] if t else None)
    if isinstance(t, str):
        return t
    if "properties" in schema or "required" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return "string"


def _value(schema: Any, root: Mapping[str, Any], words: _Words, depth: int) -> Any:
    s = _resolved(schema, root)
    if depth > _MAX_DEPTH:
        return words.next()
    if "const" in s:
        return s["const"]
    enum = s.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        options = s.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if _resolved(o, root).get("type") != "null"]
            return _value((usable or options)[0], root, words, depth + 1)
    parts = s.get("allOf")
    if isinstance(parts, list) and parts:
        merged: dict[str, Any] = {k: v for k, v in s.items() if k != "allOf"}
        for part in parts:
            part = _resolved(part, root)
            for k, v in part.items():
                if k == "properties" and isinstance(v, Mapping):
                    merged["properties"] = {**merged.get("properties", {}), **v}
                elif k == "required" and isinstance(v, list):
                    merged["required"] = [*merged.get("required", []), *v]
                else:
                    merged.setdefault(k, v)
        return _value(merged, root, words, depth + 1)
    kind = _type(s)
    if kind == "object":
        props = s.get("properties")
        out: dict[str, Any] = {}
        if isinstance(props, Mapping):
            for name, sub in props.items():
                out[str(name)] = _value(sub, root, words, depth + 1)
        for name in _required(s):
            if name not in out:
                out[name] = words.next()
        if depth == 0 and props is None and s.get("additionalProperties") is not False:
            # a bare {"type": "object"} (json_object mode): say something
            out["answer"] = words.next()
        return out
    if kind == "array":
        prefix = s.get("prefixItems")
        items = [_value(p, root, words, depth + 1) for p in prefix] \
            if isinstance(prefix, list) else []
        low = s.get("minItems")
        count = max(1, low if isinstance(low, int) and not isinstance(low, bool) else 1)
        high = s.get("maxItems")
        if isinstance(high, int) and not isinstance(high, bool):
            count = min(count, high)
        while len(items) < count:
            items.append(_value(s.get("items", {}), root, words, depth + 1))
        return items
    if kind in ("integer", "number"):
        return _number(s, words.number())
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return _string(s, words)


def _number(s: Mapping[str, Any], v: int) -> int:
    def bound(key: str) -> float | None:
        x = s.get(key)
        return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None

    if (lo := bound("minimum")) is not None and v < lo:
        v = math.ceil(lo)
    if (lo := bound("exclusiveMinimum")) is not None and v <= lo:
        v = math.floor(lo) + 1
    if (hi := bound("maximum")) is not None and v > hi:
        v = math.floor(hi)
    if (hi := bound("exclusiveMaximum")) is not None and v >= hi:
        v = math.ceil(hi) - 1
    step = s.get("multipleOf")
    if isinstance(step, int) and not isinstance(step, bool) and step > 0:
        v = step * max(1, v // step)
    return v


def _string(s: Mapping[str, Any], words: _Words) -> str:
    fmt = s.get("format")
    word = words.next()
    if fmt in _FORMATS:
        text = _FORMATS[fmt]
    elif fmt == "email":
        text = f"{word}@example.com"
    elif fmt in ("uri", "url"):
        text = f"https://example.com/{word}"
    else:
        text = word
    low, high = s.get("minLength"), s.get("maxLength")
    if isinstance(low, int) and not isinstance(low, bool) and len(text) < low:
        text = (text + " ") * (low // (len(text) + 1) + 1)
    if isinstance(high, int) and not isinstance(high, bool) and high >= 0:
        text = text[:high]
    return text


def _lexemes(value: Any) -> list[str]:
    out: list[str] = []
    _lex(value, out)
    return out


def _lex(value: Any, out: list[str]) -> None:
    if isinstance(value, Mapping):
        out.append("{")
        for i, (k, v) in enumerate(value.items()):
            if i:
                out.append(",")
            out += [json.dumps(str(k)), ":"]
            _lex(v, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, v in enumerate(value):
            if i:
                out.append(",")
            _lex(v, out)
        out.append("]")
    else:
        out.append(json.dumps(value))
