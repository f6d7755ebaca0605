"""Automatic prefix caching, after vLLM's: a prompt's KV blocks are reused
by any later prompt that starts with the same blocks.

The simulator counts a prompt's tokens as its words (openai_wire.text_tokens),
so a block of `block_tokens` tokens is that many words of the prompt's
text. Block i is identified by the hash of blocks 0..i (a chain),
so a block is reused only after the same whole prefix, as in vLLM. The cache
holds `capacity` blocks per replica and evicts the least recently used. A
hit saves that block's prefill (prefill_ms_per_token x its tokens).
:meth:`PrefixCache.clear` drops every block (the server's
``/reset_prefix_cache`` and ``/flush_cache``); the counters keep counting.
"""

from __future__ import annotations

from collections import OrderedDict


class PrefixCache:
    __slots__ = ("block_tokens", "capacity", "hits", "queries", "_blocks")

    def __init__(self, block_tokens: int, capacity: int) -> None:
        self.block_tokens, self.capacity = block_tokens, capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self.queries = 0  # prompt tokens looked up (vLLM: prefix_cache_queries)
        self.hits = 0  # of those, found cached (vLLM: prefix_cache_hits)

    def clear(self) -> None:
        """Forget every cached block (vLLM's reset_prefix_cache)."""
        self._blocks.clear()

    def admit(self, text: str, prompt_tokens: int) -> int:
        """Look the prompt up, then keep its full blocks; returns its cached tokens
        (always leaving at least one token to prefill, as vLLM does)."""
        words, width = text.split(), self.block_tokens
        chain, hashes = 0, []
        for start in range(0, len(words) - width + 1, width):
            chain = hash((chain, *words[start:start + width]))
            hashes.append(chain)
        blocks = self._blocks
        hit = 0
        for h in hashes:
            if h not in blocks:
                break
            hit += 1
        for h in hashes:  # used now: most recent
            blocks[h] = None
            blocks.move_to_end(h)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        cached = min(hit * self.block_tokens, max(prompt_tokens - 1, 0))
        self.queries += prompt_tokens
        self.hits += cached
        return cached
