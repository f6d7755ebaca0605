"""The simulator's words: a seeded vocabulary, one word per token, and the
token counts of prompts.

Every vocabulary word is JSON-encoded once per server, so a streamed event
splices pre-encoded string literals instead of encoding text per token.
"""

from __future__ import annotations

import json
import random

# A small fixed vocabulary: realistic-looking output while staying one
# "token" per chunk.  The seed only chooses the order, so output is
# reproducible for a given SimConfig.seed.
_WORDS = (  # noqa: SIM905 - a sentence reads better than 84 quoted words
    "the of and to in is that for it as with was on be at by this had not are "
    "but from or have an they which one you were all we her she there would "
    "their will when who him been has more if no out so said what up its about "
    "into than them can only other new some could time these two may then do "
    "first any my now such like our over man me even most made after also did"
).split()
# What a broken "version B" says instead: easy for a response check to catch.
WRONG_WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
               "elit"]
_SEQUENCE_LEN = 1024


class Vocabulary:
    """Seeded token stream; word i of every response is ``words[i % len]``."""

    def __init__(self, seed: int, vocabulary: list[str] = _WORDS) -> None:
        rng = random.Random(seed)
        self.words = tuple(" " + rng.choice(vocabulary) for _ in range(_SEQUENCE_LEN))
        # Pre-encoded JSON string literals, spliced straight into SSE frames.
        self.json = tuple(json.dumps(w).encode() for w in self.words)

    def text(self, n: int) -> str:
        full, rest = divmod(n, _SEQUENCE_LEN)
        return "".join(self.words) * full + "".join(self.words[:rest])


def joined(words: tuple[bytes, ...], start: int, stop: int) -> bytes:
    """JSON string literal of words[start:stop] (each a JSON literal, cycled)."""
    if stop - start == 1:
        return words[start % len(words)]
    return b'"' + b"".join(words[i % len(words)][1:-1] for i in range(start, stop)) + b'"'


def approx_tokens(chars: int) -> int:
    # ~4 characters per token is the usual rule of thumb for English BPE.
    return max(1, -(-chars // 4))


def text_tokens(text: str) -> int:
    """A prompt's tokens: one per word, as common English words are one token
    each in BPE vocabularies (and as loadkit builds its prompts), so a
    generated prompt of N tokens counts N here."""
    return max(1, len(text.split()))
