"""Prompt sets: files of real prompts.

- JSONL, one request shape per line: `{"prompt": "..."}` or
  `{"messages": [...]}` (chat), with an optional `max_tokens`;
- ShareGPT (a JSON array, or JSONL, of `{"conversations": [{"from": "human" |
  "gpt" | "system", "value": "..."}]}`): each conversation is a prompt (its
  first human message, with the reply's length in words as `max_tokens`),
  and in a session scenario its human turns are the session's turns.
A bad line or conversation raises PromptSetError naming it.
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
    # A conversation's user turns after the first: (message, its reply's
    # length in words or None); None for a prompt that is no conversation.
    turns: tuple[tuple[str, int | None], ...] | None = None

    @property
    def length(self) -> int:
        """The prompt's length in words (a word a token): its text, or its
        last message (the user's)."""
        return len((self.text or (self.messages[-1]["content"] if self.messages else "")).split())


_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "chatgpt": "assistant", "system": "system"}


def load_prompt_set(path: Path) -> list[Prompt]:
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromptSetError(name, None, f"cannot read: {exc}") from None
    if text.lstrip().startswith("["):
        try:
            doc = json.loads(text)
        except ValueError:
            raise PromptSetError(name, None, "not valid JSON (a ShareGPT array?)") from None
        return _sharegpt(name, list(enumerate(doc if isinstance(doc, list) else [], start=1)))
    if '"conversations"' in text[:4096]:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except ValueError:
                    raise PromptSetError(name, n, "not valid JSON") from None
        return _sharegpt(name, records)
    lines = text.splitlines()
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
        messages, prompt, max_tokens = (rec.get("messages"), rec.get("prompt"),
                                        rec.get("max_tokens"))
        if messages is None and not isinstance(prompt, str):
            raise PromptSetError(name, n, "needs `prompt` (a string) or `messages` (a list)")
        if messages is not None and not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages)):
            raise PromptSetError(name, n, "`messages` must be a non-empty list of {role, content}")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise PromptSetError(name, n, "`max_tokens` must be a positive integer")
        out.append(Prompt(messages, prompt, max_tokens))
    if not out:
        raise PromptSetError(name, None, "has no prompts")
    return out


def _sharegpt(name: str, records: list[tuple[int, object]]) -> list[Prompt]:
    """Conversations with a human turn; others (empty, gpt-only) are skipped,
    as ShareGPT dumps have many."""
    out = []
    for n, rec in records:
        turns = rec.get("conversations") if isinstance(rec, dict) else None
        if not isinstance(turns, list) or not all(
                isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns):
            raise PromptSetError(name, n, "needs `conversations`: a list of {from, value}")
        system = [t["value"] for t in turns if _ROLES.get(str(t.get("from"))) == "system"]
        said = [(_ROLES.get(str(t.get("from"))), t["value"]) for t in turns]
        users = [(i, v) for i, (role, v) in enumerate(said) if role == "user" and v.strip()]
        if not users:
            continue
        (first, text), *later = users
        messages = [{"role": "system", "content": s} for s in system[:1]]
        out.append(Prompt([*messages, {"role": "user", "content": text}], None,
                          _reply(said, first), tuple((v, _reply(said, i)) for i, v in later)))
    if not out:
        raise PromptSetError(name, None, "has no conversation with a human turn")
    return out


def _reply(said: list[tuple[str | None, str]], i: int) -> int | None:
    """The length in words of the answer to message i, if the next is one."""
    nxt = said[i + 1] if i + 1 < len(said) else None
    return max(1, len(nxt[1].split())) if nxt and nxt[0] == "assistant" else None
