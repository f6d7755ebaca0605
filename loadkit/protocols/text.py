"""Prompt text of about N tokens, made locally (no tokenizer download).

Common short English words are about one token each in BPE vocabularies. One
seeded word sequence is kept as bytes with word offsets, so the text for N
tokens is a slice: building a request body costs a copy, not a generator.
"""

from __future__ import annotations

import random

WORDS = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "they", "you", "were", "her", "she", "there", "been", "one", "all", "we", "their",
    "has", "would", "when", "if", "more", "no", "out", "so", "said", "what", "up", "its",
    "about", "into", "than", "them", "can", "only", "other", "new", "some", "time", "could",
    "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our",
    "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before",
    "must", "through",
]


class PromptText:
    def __init__(self, seed: str):
        self._rng = random.Random(seed)
        self._blob = b""
        self._ends = [0]  # _blob[:_ends[n]] holds n words

    def tokens(self, n: int) -> bytes:
        """ASCII text of n words (JSON-safe as it is)."""
        if n >= len(self._ends):
            self._grow(max(n, 2 * len(self._ends)))
        return self._blob[:self._ends[n]]

    def _grow(self, words: int) -> None:
        extra = [self._rng.choice(WORDS) for _ in range(words - len(self._ends) + 1)]
        parts = [self._blob]
        end = self._ends[-1]
        for w in extra:
            piece = (" " + w if end else w).encode()
            parts.append(piece)
            end += len(piece)
            self._ends.append(end)
        self._blob = b"".join(parts)
