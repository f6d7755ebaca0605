"""Real token counts, with a tokenizer the user has locally (optional).

Without one, loadkit counts a common English word as one token (protocols/
text.py) and a streamed event as one token unless the server says more.
With `tokenizer:` in the workload (a `tokenizer.json`, or a model already in
the local Hugging Face cache: nothing is downloaded), prompts are cut to
exactly N tokens and each streamed event's text is counted in tokens. The
`tokenizers` package (Hugging Face's Rust tokenizers) is an optional extra:
`pip install 'loadkit[tokenizer]'`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from loadkit.errors import InputError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = ["Counter", "find_tokenizer", "load"]


def find_tokenizer(name: str, base: Path) -> Path:
    """A tokenizer.json path, or a model name in the local Hugging Face cache
    (HF_HUB_CACHE, HF_HOME/hub or ~/.cache/huggingface/hub)."""
    path = base / name
    if path.is_file():
        return path
    if path.is_dir() and (path / "tokenizer.json").is_file():
        return path / "tokenizer.json"
    hub = Path(os.environ.get("HF_HUB_CACHE") or
               Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snapshots = hub / ("models--" + name.replace("/", "--")) / "snapshots"
    found = sorted(snapshots.glob("*/tokenizer.json")) if snapshots.is_dir() else []
    if found:
        return found[-1]
    raise InputError(f"tokenizer {name!r}: no such tokenizer.json, and no model of that name "
                     f"in the local Hugging Face cache ({hub}); loadkit never downloads one")


def load(text: str) -> Tokenizer:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError("`tokenizer:` needs the tokenizers package: "
                         "pip install 'loadkit[tokenizer]'") from None
    try:
        return Tokenizer.from_str(text)
    except Exception as exc:  # noqa: BLE001 - the library raises its own Exception type
        raise InputError(f"tokenizer: not a tokenizer.json: {str(exc)[:200]}") from None


class Counter:
    """Token counts and exact-length text with one tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._single: list[str] | None = None

    def single_token_word(self, i: int) -> str:
        """The i-th (cyclically) word that is one token led by a space: two
        different i below the count of such words give different tokens."""
        if self._single is None:
            tok = self.tokenizer
            candidates = sorted({w for tid in range(tok.get_vocab_size())
                                 if (w := tok.decode([tid]).strip()).isalpha()})
            encoded = tok.encode_batch([" " + w for w in candidates], add_special_tokens=False)
            self._single = [w for w, e in zip(candidates, encoded) if len(e.ids) == 1] or ["x"]
        return self._single[i % len(self._single)]

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def cut(self, text: str, n: int) -> str:
        """The longest start of `text` that is exactly `n` tokens (cut at a
        token boundary, which re-encodes to the same tokens); all of it when
        it is shorter."""
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        if n >= len(enc.offsets):
            return text
        return text[:enc.offsets[n - 1][1]] if n > 0 else ""
