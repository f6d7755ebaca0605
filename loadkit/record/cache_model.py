"""The prefix-cache hits a run's own prompts should get, to compare with
the hits the server reports.

A server's prefix cache may be warm from before the run (an earlier run's
identical prompts: throughput flattered) or evict under load (deflated):
either way the verdict is then about the cache's state, not the release.
The model keeps the run's prompts as a prefix cache would, from empty: each
prompt in blocks of BLOCK tokens (a token a word, as the simulator and
loadkit's prompts count them), block i known by the hash of blocks 0..i,
the least recently used forgotten beyond CAPACITY blocks; a prompt is
expected to hit its leading blocks seen before in this run, never its
last token (vLLM always prefills one). Real servers' block sizes and
tokenizers differ, so the comparison in slo/cache_state.py has a tolerance.

Fed on the recorder's thread, only for answers whose server reported its
cached tokens: the load's loop never pays for it, and a server that reports
nothing costs nothing. A session's turn continued by `previous_response_id`
carries only what is new, so such runs are not modelled.
"""

from __future__ import annotations

from collections import OrderedDict

import orjson

BLOCK = 16  # vLLM's default block size
CAPACITY = 50_000  # blocks: 800k tokens, about what one replica's KV-cache holds
_TEXT_KEYS = ("system", "instructions", "messages", "input", "prompt", "content", "text")


class ExpectedCache:
    __slots__ = ("_blocks",)

    def __init__(self) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def admit(self, body: bytes, prompt_tokens: int, answer: str | None = None) -> int:
        """The tokens of this request's prompt (`prompt_tokens` as the server
        counted them) a cache of this run's prompts would hold; the prompt,
        and the answer after it where kept (a session's next turn carries it,
        and servers cache what they generated), are kept for the ones after."""
        words = prompt_words(body)
        chain, hit, missed = 0, 0, False
        blocks = self._blocks
        said = words + answer.split() if answer else words
        for start in range(0, len(said) - BLOCK + 1, BLOCK):
            chain = hash((chain, *said[start:start + BLOCK]))
            if start + BLOCK <= len(words):
                if not missed and chain in blocks:
                    hit += 1
                else:
                    missed = True
            blocks[chain] = None
            blocks.move_to_end(chain)
        while len(blocks) > CAPACITY:
            blocks.popitem(last=False)
        if not words:
            return 0
        # Words to the server's tokens (a tokenizer makes more tokens than words).
        cached = min(hit * BLOCK, len(words) - 1) * prompt_tokens / len(words)
        return min(round(cached), max(prompt_tokens - 1, 0))


def prompt_words(body: bytes) -> list[str]:
    """The words of every text a generation request carries (system,
    messages, input items, prompt), in order; [] for a body without them."""
    try:
        doc = orjson.loads(body)
    except ValueError:
        return []
    out: list[str] = []
    _walk(doc, out)
    return out


def _walk(node: object, out: list[str]) -> None:
    if isinstance(node, str):
        out += node.split()
    elif isinstance(node, list):
        for item in node:
            _walk(item, out)
    elif isinstance(node, dict):
        for key in _TEXT_KEYS:
            if key in node:
                _walk(node[key], out)
