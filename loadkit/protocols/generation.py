"""Text-generation requests in every dialect (OpenAI chat, completions and
Responses, Anthropic Messages): bodies built before the run and spliced on
the hot path, sessions' turns and history, and each dialect's parsers.

Prompts start with the request's number, so no two share a prefix (as with
distinct users; a shared prefix would let a server's prefix cache flatter
TTFT), unless the scenario declares a prefix pool: then each starts with one
of its shared prefixes, and the request's number follows it.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import random
from collections.abc import Callable
from typing import Any

from loadkit.engine.adapter import (
    BodyBuilder,
    HistoryBuilder,
    ParsedResponse,
    PreparedRequest,
    StreamParser,
    TurnBuilder,
)
from loadkit.errors import InputError
from loadkit.protocols import anthropic, openai, responses
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.dialects import DIALECTS, Dialect
from loadkit.protocols.leaving import leave_policy, retry_policy
from loadkit.protocols.media import MediaParts, text_part
from loadkit.protocols.text import WORDS, PromptText
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.scenarios import GenerationScenario
from loadkit.workload.tokenizer import Counter as TokenCounter
from loadkit.workload.traces import MOONCAKE_BLOCK_TOKENS as BLOCK_TOKENS

StreamFactory = Callable[..., StreamParser]
PARSERS: dict[str, tuple[StreamFactory, Callable[..., ParsedResponse]]] = {
    "openai-chat": (openai.OpenAIStream, openai.parse_body),
    "openai-completions": (openai.OpenAIStream, openai.parse_body),
    "openai-responses": (responses.ResponsesStream, responses.parse_body),
    "anthropic-messages": (anthropic.AnthropicStream, anthropic.parse_body)}


def prepare(scenario: GenerationScenario, headers: dict[str, str], seed: str,
            prompts: list[Prompt] | None = None,
            counter: TokenCounter | None = None) -> PreparedRequest:
    # A session turn asks for its text itself (Answer); checks of the text need it.
    keep = scenario.checks.needs_body or scenario.response_format is not None
    dialect = DIALECTS[scenario.kind]
    new_stream, parse_body = PARSERS[scenario.kind]
    chat = scenario.kind != "openai-completions"
    latency = scenario.tool_latency
    media = MediaParts(scenario.media, scenario.kind, seed) if scenario.media else None
    return PreparedRequest(
        method="POST", path=scenario.request_path,
        headers={"Content-Type": "application/json", **headers},
        build_body=_body_builder(scenario, dialect, seed, prompts, counter, media),
        new_stream_parser=(lambda text: new_stream(keep_text=keep or text, counter=counter))
        if scenario.stream else None,
        parse_body=functools.partial(parse_body, counter=counter) if counter else parse_body,
        check=make_check(scenario.checks, scenario.tools, scenario.response_format),
        ok_status=ok_statuses(scenario.checks.status),
        # A chat can hold a session: declared (`session:`), or replayed from a trace.
        build_turn=_turn_builder(scenario, dialect, seed, counter, prompts, media)
        if chat else None,
        next_history=_history_builder(dialect) if chat else None,
        max_tool_rounds=scenario.max_tool_rounds if scenario.tools else 0,
        tool_latency=(latency, latency) if isinstance(latency, float)
        else (latency.min, latency.max),
        # With media the server's prompt count holds the images' and clips'
        # tokens too: no drift can be read from it.
        prompt_is_asked=not prompts and scenario.prefix is None and not scenario.media,
        leave=leave_policy(scenario.abandon, scenario.name, seed),
        retry=retry_policy(scenario.abandon, scenario.name, seed),
        whole_prompt=not scenario.previous_response_id,
        describe_media=media.ledger.section if media else None)


_MAX, _PROMPT, _MEDIA = "@@loadkit:max_tokens@@", "@@loadkit:prompt@@", "@@loadkit:media@@"
_MEDIA_SLOT = f', "{_MEDIA}"'.encode()  # where serialised media parts are spliced in


def _question(m: dict) -> bool:
    """A user's question (its text, or the first one's parts with the media
    slot), not a tool result."""
    c = m.get("content")
    return m.get("role") == "user" and (isinstance(c, str) or
                                        isinstance(c, list) and _MEDIA in c)


def _with_media(messages: list[dict], kind: str) -> tuple[list[dict], bool]:
    """The messages with a media slot after the last user message's content
    (its text made a text part; a list keeps its own parts), and whether
    there was a user message to carry them."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "user":
            c = m.get("content")
            parts = list(c) if isinstance(c, list) and c else [text_part(kind, str(c or ""))]
            return [*messages[:i], {**m, "content": [*parts, _MEDIA]}, *messages[i + 1:]], True
    return messages, False


class Template:
    """A body with its output limit, the user's text and (with `media`) its
    media parts left open, serialised once: a request joins a handful of
    byte strings, no JSON encoding. The text spliced in is JSON-safe
    (generated words, digits and colons); media parts come serialised."""

    __slots__ = ("_parts",)

    def __init__(self, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self._parts = [[p.split(_PROMPT.encode()) for p in half.split(f'"{_MAX}"'.encode())]
                       for half in raw.split(_MEDIA_SLOT)]

    def __call__(self, max_tokens: int | None, text: bytes, media: bytes = b"") -> bytes:
        n = b"null" if max_tokens is None else str(max_tokens).encode()
        return media.join(n.join(text.join(p) for p in half) for half in self._parts)


def _limits(s: GenerationScenario, dialect: Dialect, max_tokens: object) -> dict[str, Any]:
    out = {dialect.max_key: max_tokens}
    if s.exact_output and dialect.vllm_extras:
        out |= {"ignore_eos": True, "min_tokens": max_tokens}
    return out


def _turn_builder(s: GenerationScenario, dialect: Dialect, seed: str,
                  counter: TokenCounter | None, prompts: list[Prompt] | None,
                  media: MediaParts | None = None) -> TurnBuilder:
    """A session's turns: the history as it happened, then a new user message
    (the request's number, then its words: unique like any prompt), or the
    results of the tools the last answer called. With a prefix pool, a
    session opens with one of its prefixes as the system message, kept for
    all its turns. With media, its first user message carries them, and the
    history re-sends them each turn (spliced in as bytes, never re-encoded).
    With `previous_response_id` (Responses API) a turn sends only what is
    new, and the id of the answer it follows."""
    fixed = dialect.fixed(s)
    text = PromptText(f"{seed}:{s.name}:turns")
    pick = _prefix_picker(s, seed, counter)
    sets = _filtered(s, prompts)
    rng = random.Random(f"{seed}:{s.name}:sessions")

    def turn(history: list[dict], prompt_tokens: int | None, max_tokens: int | None,
             seq: int, state: dict) -> tuple[bytes, int | None, list[dict], bool]:
        last, resent = False, "media" in state  # drawn by an earlier turn
        if calls := state.pop("tool_calls", None):  # the client ran the tools
            messages = [*history, *dialect.tool_results(calls, s.tool_result)]
            asked = state.get("asked", max_tokens)
            last = state.get("last", False)  # still the user turn's: its last, or not
        elif sets and not history:  # a dataset's conversation opens the session
            p = state["conversation"] = sets[rng.randrange(len(sets))]
            messages = list(p.messages or [{"role": "user", "content": p.text}])
            if media is not None:  # its first question carries them
                messages, placed = _with_media(messages, s.kind)
                if placed:
                    state["media"], state["drawn"] = media(), media.last
            asked, last = p.max_tokens or max_tokens, p.turns == ()  # a one-turn conversation
        elif (conv := state.get("conversation")) is not None and conv.turns:
            i = sum(map(_question, history)) - 1  # its later turns, in order
            said, reply = conv.turns[min(i, len(conv.turns) - 1)]
            messages, asked = [*history, {"role": "user", "content": said}], reply or max_tokens
            last = i >= len(conv.turns) - 1
        else:
            if not history and (prefix := pick()):
                history = [{"role": "system", "content": prefix.decode().rstrip()}]
            n = prompt_tokens or 1
            words = numbered(counter, seq, text, n).decode()
            content: str | list = words
            if media is not None and "media" not in state:  # the session's first question
                state["media"], state["drawn"] = media(), media.last
                content = [text_part(s.kind, words), _MEDIA]
            messages, asked = [*history, {"role": "user", "content": content}], max_tokens
        state["asked"], state["last"] = asked, last
        previous = state.get("response_id") if s.previous_response_id else None
        body = dialect.body(fixed, _limits(s, dialect, asked),
                            messages[len(history):] if previous else messages)
        if previous:
            body["previous_response_id"] = previous
        raw = json.dumps(body).encode()
        if "media" in state and _MEDIA_SLOT in raw:  # the first question's, sent or re-sent
            raw = raw.replace(_MEDIA_SLOT, state["media"])
            if resent and media is not None:  # a later turn: they travel again
                media.ledger.add(state["drawn"])
        return raw, asked, messages, last
    return turn


def _history_builder(dialect: Dialect) -> HistoryBuilder:
    def history(sent: list[dict], answer: ParsedResponse, state: dict) -> list[dict]:
        if answer.response_id:
            state["response_id"] = answer.response_id
        if answer.tool_calls:
            state["tool_calls"] = answer.tool_calls
        return [*sent, *dialect.assistant(answer.text, answer.tool_calls)]
    return history


def _filtered(s: GenerationScenario, prompts: list[Prompt] | None) -> list[Prompt]:
    """The prompt set's prompts the scenario keeps (`prompts_filter`, in words)."""
    if not prompts:
        return []
    kept = s.kept_prompts(prompts)
    if not kept:
        raise InputError(f"scenario {s.name}: `prompts_filter` keeps none of {s.prompts}")
    return kept


def _body_builder(s: GenerationScenario, dialect: Dialect, seed: str,
                  prompts: list[Prompt] | None,
                  counter: TokenCounter | None = None,
                  media: MediaParts | None = None) -> BodyBuilder:
    fixed = dialect.fixed(s)
    prompts = _filtered(s, prompts)
    if prompts:
        rng = random.Random(f"{seed}:{s.name}:prompts")

        def from_set(prompt_tokens: int | None, max_tokens: int | None,
                     seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, int | None]:
            p = prompts[rng.randrange(len(prompts))]
            asked = p.max_tokens or max_tokens  # a line's own max_tokens wins
            messages = p.messages or [{"role": "user", "content": p.text}]
            placed = False
            if media is not None:  # after the prompt's last user message
                messages, placed = _with_media(messages, s.kind)
            raw = json.dumps(dialect.body(fixed, _limits(s, dialect, asked), messages)).encode()
            return (raw.replace(_MEDIA_SLOT, media()) if media is not None and placed
                    else raw), asked
        return from_set

    text = PromptText(f"{seed}:{s.name}:prompt")
    pick = _prefix_picker(s, seed, counter)
    # With media the user's content is a list: the text part, then the media parts.
    content: str | list = _PROMPT if media is None else [text_part(s.kind, _PROMPT), _MEDIA]
    template = Template(dialect.body(fixed, _limits(s, dialect, _MAX),
                                     [{"role": "user", "content": content}]))
    unique = s.unique_prompts
    parts = media or (lambda: b"")

    def spliced(prompt_tokens: int | None, max_tokens: int | None,
                seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, int | None]:
        if blocks:  # a trace's prompt blocks: shared exactly where their ids are
            return (template(max_tokens, blocks_text(blocks, prompt_tokens, counter), parts()),
                    max_tokens)
        words = prompt_tokens or 1
        own = numbered(counter, seq, text, words) if unique else \
            exact(counter, text.tokens(words), words)
        return template(max_tokens, pick() + own, parts()), max_tokens
    return spliced


def numbered(counter: TokenCounter | None, seq: int, text: PromptText, n: int) -> bytes:
    """n tokens that open with the request's number (`12: ...`: no two
    prompts alike), cut by the tokenizer; without one, the number is one of
    the n words (a 10-token prompt sent 11 words, and read 10% long)."""
    if counter is not None:
        return exact(counter, b"%d: " % seq + text.tokens(n), n)
    return (b"%d: " % seq + text.tokens(n - 1)).rstrip() if n > 1 else b"%d" % seq


def exact(counter: TokenCounter | None, text: bytes, n: int) -> bytes:
    """`text` (at least n tokens) cut to exactly n tokens with the tokenizer;
    as it is without one (n words: a word a token)."""
    return counter.cut(text.decode(), n).encode() if counter is not None else text


def blocks_text(blocks: tuple[int, ...], prompt_tokens: int | None,
                counter: TokenCounter | None = None) -> bytes:
    """A prompt made of trace blocks of BLOCK_TOKENS tokens each (words, or
    the tokenizer's tokens), the same text for the same block id in every
    request and run; the last block is cut to the prompt's length. Each block
    starts with a word naming its id, so two prompts share exactly their
    common leading blocks and no more. With a tokenizer that word is one of
    its single-token words, picked by the id (distinct for ids up to the
    number of such words), and every block starts with a space, so it
    tokenizes the same alone and after another."""
    full = len(blocks) * BLOCK_TOKENS
    cut = full if prompt_tokens is None else min(full, max(prompt_tokens, 1))
    whole, rest = divmod(cut, BLOCK_TOKENS)
    parts = [_block(b, counter) for b in blocks[:whole]]
    if rest:
        last = _block(blocks[whole], counter)
        parts.append(exact(counter, last, rest) if counter is not None
                     else b" ".join(last.split(b" ")[:rest]))
    return b"".join(parts) if counter is not None else b" ".join(parts)


@functools.lru_cache(maxsize=4096)
def _block(block: int, counter: TokenCounter | None = None) -> bytes:
    words = random.Random(f"block:{block}").choices(WORDS, k=BLOCK_TOKENS - 1)
    if counter is None:
        return " ".join([f"b{block}", *words]).encode()
    text = " ".join(["", counter.single_token_word(block), *words])
    return exact(counter, text.encode(), BLOCK_TOKENS)


def _prefix_picker(s: GenerationScenario, seed: str,
                   counter: TokenCounter | None = None) -> Callable[[], bytes]:
    """The next request's shared prefix (with the space that ends it), or b"".

    Prefix i is its own seeded word sequence; the unique part (request number
    and words) follows it, so a server's prefix cache can reuse exactly the
    prefix. Picks are seeded, in the order requests are built."""
    pool = s.prefix
    if pool is None:
        return lambda: b""
    texts = [exact(counter, PromptText(f"{seed}:{s.name}:prefix:{i}").tokens(pool.tokens),
                   pool.tokens) + b" " for i in range(pool.count)]
    cumulative = list(itertools.accumulate(pool.weights()))
    rng = random.Random(f"{seed}:{s.name}:prefix-pick")
    last = len(texts) - 1
    return lambda: texts[min(bisect.bisect(cumulative, rng.random() * cumulative[-1]), last)]
