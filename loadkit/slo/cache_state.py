"""Is the verdict about the release, or about the server's prefix cache?

The server's reported cache hits (usage's cached tokens) against the hits
this run's own prompts explain from an empty cache (record/cache_model.py):
many more hits than the run explains mean a cache warm from before the run
(an earlier run's identical prompts), which flatters every latency and
throughput figure: a passing verdict is then inconclusive, with the reason.
Far fewer hits mean the cache evicted under load, or counts in other blocks
or tokens: reported, not judged.
"""

from __future__ import annotations

from loadkit.result.model import CacheState, Tokens

TOLERANCE = 0.10  # of the prompt tokens: block sizes and tokenizers differ


def cache_state(tokens: Tokens, reset: bool) -> CacheState | None:
    """None where the server said nothing of its cache."""
    prompt, cached, expected = tokens.prompt_total, tokens.cached_total, \
        tokens.expected_cached_total
    if not prompt or cached is None or expected is None:
        return None
    seen, explained = cached / prompt, expected / prompt
    said = f"observed {seen:.0%} of prompt tokens from the cache, {explained:.0%} expected"
    if seen - explained > TOLERANCE and reset:  # reset, yet: the model is what is off
        return CacheState(state="as expected", observed_share=round(seen, 4),
                          expected_share=round(explained, 4), reset=reset,
                          reason=f"{said}: more than this run's prompts explain, though the "
                                 "cache was reset before the clock (the server caches what "
                                 "loadkit cannot see, e.g. tokens it counts differently)")
    if seen - explained > TOLERANCE:
        return CacheState(state="warm", observed_share=round(seen, 4),
                          expected_share=round(explained, 4), reset=reset,
                          reason=f"the server's prefix cache was warm from before the run: "
                                 f"{said} from this run's own prompts (`cache: cold` resets "
                                 "it before the clock)")
    if explained - seen > TOLERANCE:
        return CacheState(state="evicting", observed_share=round(seen, 4),
                          expected_share=round(explained, 4), reset=reset,
                          reason=f"the server's prefix cache kept less than this run's prompts "
                                 f"would: {said} (evicted under load, or counted in other "
                                 "blocks or tokens)")
    return CacheState(state="as expected", observed_share=round(seen, 4),
                      expected_share=round(explained, 4), reset=reset, reason=said)
