"""Prompt sets: JSONL files of real prompts, one request shape per line.

Each line is `{"prompt": "..."}` or `{"messages": [...]}` (chat), with an
optional `max_tokens`. A bad line raises PromptSetError naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple


class PromptSetError(ValueError):
    def __init__(self, path: str, line: int | None, message: str):
        self.path, self.line = path, line
        super().__init__(message)


class Prompt(NamedTuple):
    messages: list[dict] | None
    text: str | None
    max_tokens: int | None


def load_prompt_set(path: Path) -> list[Prompt]:
    name = str(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptSetError(name, None, f"cannot read: {exc}") from None
    out = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            raise PromptSetError(name, n, "not valid JSON") from None
        if not isinstance(rec, dict):
            raise PromptSetError(name, n, "must be a JSON object")
        messages, text, max_tokens = rec.get("messages"), rec.get("prompt"), rec.get("max_tokens")
        if messages is None and not isinstance(text, str):
            raise PromptSetError(name, n, "needs `prompt` (a string) or `messages` (a list)")
        if messages is not None and not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)):
            raise PromptSetError(name, n, "`messages` must be a non-empty list of {role, content}")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise PromptSetError(name, n, "`max_tokens` must be a positive integer")
        out.append(Prompt(messages, text, max_tokens))
    if not out:
        raise PromptSetError(name, None, "has no prompts")
    return out
