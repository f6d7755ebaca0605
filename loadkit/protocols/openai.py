"""OpenAI-compatible chat and completions: request bodies and response parsing.

Streaming answers are SSE; each chunk with non-empty generated text is one
token event, which may carry several tokens (vLLM's stream interval,
speculative decoding). Token counts come from the server's `usage`
(requested with `stream_options.include_usage`) when it sends one, else from
counted chunks; with `usage_per_event` (vLLM's continuous_usage_stats) each
event's own token count comes from the running usage it carries.
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

import orjson

from loadkit.engine.adapter import (
    BodyBuilder,
    IncompleteAnswer,
    ParsedResponse,
    PreparedRequest,
    ProtocolError,
    TurnBuilder,
)
from loadkit.errors import InputError
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.sse import SSEDecoder, SSEError
from loadkit.protocols.text import WORDS, PromptText
from loadkit.workload.prompt_set import Prompt
from loadkit.workload.scenarios import OpenAIScenario
from loadkit.workload.tokenizer import Counter as TokenCounter
from loadkit.workload.traces import MOONCAKE_BLOCK_TOKENS as BLOCK_TOKENS

MISSING = "missing"  # the finish_reason of an answer that gave none


def prepare(scenario: OpenAIScenario, headers: dict[str, str], seed: str,
            prompts: list[Prompt] | None = None,
            counter: TokenCounter | None = None) -> PreparedRequest:
    keep = scenario.checks.needs_body  # a session turn asks for its text itself (Answer)
    return PreparedRequest(
        method="POST", path=scenario.request_path,
        headers={"Content-Type": "application/json", **headers},
        build_body=_body_builder(scenario, seed, prompts, counter),
        new_stream_parser=(lambda text: OpenAIStream(keep_text=keep or text, counter=counter))
        if scenario.stream else None,
        parse_body=parse_body, check=make_check(scenario.checks),
        ok_status=ok_statuses(scenario.checks.status),
        # Chat can hold a session: declared (`session:`), or replayed from a trace.
        build_turn=_turn_builder(scenario, seed, counter, prompts)
        if scenario.kind == "openai-chat" else None,
        prompt_is_asked=not prompts and scenario.prefix is None)


def _turn_builder(s: OpenAIScenario, seed: str, counter: TokenCounter | None,
                  prompts: list[Prompt] | None) -> TurnBuilder:
    """A session's turns: the history as it happened, then a new user message
    (the request's number, then its words: unique like any prompt). With a
    prefix pool, a session opens with one of its prefixes as the system
    message, kept for all its turns."""
    fixed: dict[str, Any] = {"model": s.model, "stream": s.stream}
    if s.stream:
        fixed["stream_options"] = {"include_usage": True}
        if s.usage_per_event:
            fixed["stream_options"]["continuous_usage_stats"] = True
    text = PromptText(f"{seed}:{s.name}:turns")
    pick = _prefix_picker(s, seed, counter)
    sets = _filtered(s, prompts)
    rng = random.Random(f"{seed}:{s.name}:sessions")
    def turn(history: list[dict], prompt_tokens: int | None, max_tokens: int | None,
             seq: int, state: dict) -> tuple[bytes, int | None, list[dict], bool]:
        last = False
        if sets and not history:  # a dataset's conversation opens the session
            p = state["conversation"] = sets[rng.randrange(len(sets))]
            messages = list(p.messages or [{"role": "user", "content": p.text}])
            asked, last = p.max_tokens or max_tokens, p.turns == ()  # a one-turn conversation
        elif (conv := state.get("conversation")) is not None and conv.turns:
            i = sum(m["role"] == "user" for m in history) - 1  # its later turns, in order
            said, reply = conv.turns[min(i, len(conv.turns) - 1)]
            messages, asked = [*history, {"role": "user", "content": said}], reply or max_tokens
            last = i >= len(conv.turns) - 1
        else:
            if not history and (prefix := pick()):
                history = [{"role": "system", "content": prefix.decode().rstrip()}]
            n = prompt_tokens or 1
            words = exact(counter, b"%d: " % seq + text.tokens(n), n).decode()
            messages, asked = [*history, {"role": "user", "content": words}], max_tokens
        body = {**fixed, **_limits(s, asked), "messages": messages}
        return json.dumps(body).encode(), asked, messages, last
    return turn


def _filtered(s: OpenAIScenario, prompts: list[Prompt] | None) -> list[Prompt]:
    """The prompt set's prompts the scenario keeps (`prompts_filter`, in words)."""
    if not prompts:
        return []
    f = s.prompts_filter
    kept = [p for p in prompts if f is None or f.min_tokens <= p.length <= f.max_tokens]
    if not kept:
        raise InputError(f"scenario {s.name}: `prompts_filter` keeps none of {s.prompts}")
    return kept


def _body_builder(s: OpenAIScenario, seed: str, prompts: list[Prompt] | None,
                  counter: TokenCounter | None = None) -> BodyBuilder:
    chat = s.kind == "openai-chat"
    fixed: dict[str, Any] = {"model": s.model, "stream": s.stream}
    if s.stream:
        fixed["stream_options"] = {"include_usage": True}
        if s.usage_per_event:
            fixed["stream_options"]["continuous_usage_stats"] = True
    prompts = _filtered(s, prompts)
    if prompts:
        rng = random.Random(f"{seed}:{s.name}:prompts")

        def from_set(prompt_tokens: int | None, max_tokens: int | None,
                     seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, int | None]:
            p = prompts[rng.randrange(len(prompts))]
            asked = p.max_tokens or max_tokens  # a line's own max_tokens wins
            body = {**fixed, **_limits(s, asked)}
            if chat:
                body["messages"] = p.messages or [{"role": "user", "content": p.text}]
            else:
                body["prompt"] = p.text if p.text is not None else \
                    "\n".join(m["content"] for m in p.messages or [])
            return json.dumps(body).encode(), asked
        return from_set

    text = PromptText(f"{seed}:{s.name}:prompt")
    pick = _prefix_picker(s, seed, counter)
    head = json.dumps(fixed)[:-1].encode() + b', "max_tokens": '
    extra = b', "ignore_eos": true, "min_tokens": ' if s.exact_output else None
    open_text = b', "messages": [{"role": "user", "content": "' if chat else b', "prompt": "'
    close = b'"}]}' if chat else b'"}'
    unique = s.unique_prompts

    def spliced(prompt_tokens: int | None, max_tokens: int | None,
                seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, int | None]:
        n = str(max_tokens).encode()
        limits = n + extra + n if extra else n
        if blocks:  # a trace's prompt blocks: shared exactly where their ids are
            return (head + limits + open_text + blocks_text(blocks, prompt_tokens, counter)
                    + close, max_tokens)
        nonce = b"%d: " % seq if unique else b""
        words = prompt_tokens or 1
        return (head + limits + open_text + pick()
                + exact(counter, nonce + text.tokens(words), words) + close, max_tokens)
    return spliced


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


def _prefix_picker(s: OpenAIScenario, seed: str,
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


def _limits(s: OpenAIScenario, max_tokens: int | None) -> dict:
    out = {"max_tokens": max_tokens}
    if s.exact_output:
        out |= {"ignore_eos": True, "min_tokens": max_tokens}
    return out


def parse_body(raw: bytes) -> ParsedResponse:
    """A non-streaming answer: JSON with choices and, usually, usage. One with
    no choice, or whose choice holds no output (no text, reasoning or tool
    call), is incomplete."""
    try:
        doc = orjson.loads(raw)
    except ValueError:
        raise ProtocolError(f"response is not JSON: {raw[:80]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), list):
        raise ProtocolError("response JSON has no `choices` list")
    if not doc["choices"] or not isinstance(c := doc["choices"][0], dict):
        raise IncompleteAnswer("answer has no choice")
    message = c.get("message")
    if isinstance(message, dict):  # chat: its message is the stream's deltas in one
        text, output, _ = _delta({"choices": [{"delta": message}]})
    else:
        text = output = c.get("text") if isinstance(c.get("text"), str) else None
    tokens = _usage_tokens(doc)
    if not output:
        said = f" (its usage says {tokens:,} tokens)" if tokens else ""
        raise IncompleteAnswer(f"answer with no output (finish_reason "
                               f"{c.get('finish_reason') or MISSING}){said}")
    prompt, cached = _prompt_usage(doc)
    finish = c.get("finish_reason")
    return ParsedResponse(tokens, "usage" if tokens is not None else "none", text, doc,
                          prompt_tokens=prompt, cached_tokens=cached,
                          finish_reason=finish if isinstance(finish, str) and finish
                          else MISSING, reasoning_tokens=_reasoning_usage(doc))


class OpenAIStream:
    """Parses an OpenAI SSE stream incrementally.

    A token event is one that carries generated output: answer text,
    reasoning text (`reasoning_content`, `reasoning`) or a tool call's
    fragment; a role-only or empty event is not, so TTFT never counts from
    it. The stream is whole when it ended after a `finish_reason` or with
    `[DONE]` and carried at least one token; otherwise it is incomplete."""

    __slots__ = ("_sse", "_chunks", "_usage", "_done", "_text", "_per_event", "_prompt",
                 "_counter", "_counted", "_finish", "_answer_at", "_reasoning", "_reasoning_said")

    def __init__(self, keep_text: bool = False, counter: TokenCounter | None = None) -> None:
        self._sse = SSEDecoder()
        self._chunks = 0
        self._usage: int | None = None
        self._done = False
        self._finish: str | None = None  # the last finish_reason the stream gave
        self._text: list[str] | None = [] if keep_text else None
        # Tokens of each token event from the running usage it carried;
        # None once one came without it.
        self._per_event: list[int] | None = []
        self._prompt: tuple[int | None, int | None] = (None, None)
        # With a tokenizer: each event's text counted in tokens.
        self._counter = counter
        self._counted: list[int] = []
        self._answer_at: int | None = None  # the first answer event's index
        self._reasoning: list[int] = []  # indexes of reasoning events
        self._reasoning_said: int | None = None  # usage's reasoning_tokens

    def feed(self, data: bytes) -> int:
        events = 0
        try:
            payloads = self._sse.feed(data)
        except SSEError as exc:
            raise ProtocolError(str(exc)) from None
        for payload in payloads:
            if payload == b"[DONE]":
                self._done = True
                continue
            try:
                doc = orjson.loads(payload)
            except ValueError:
                raise ProtocolError(f"stream chunk is not JSON: {payload[:80]!r}") from None
            if not isinstance(doc, dict):
                raise ProtocolError("stream chunk is not a JSON object")
            if "error" in doc:
                raise ProtocolError(f"error in stream: {str(doc['error'])[:200]}")
            before = self._usage
            usage = _usage_tokens(doc)
            if usage is not None:
                self._usage = usage
                self._prompt = _prompt_usage(doc)
                self._reasoning_said = _reasoning_usage(doc)
            answer, output, finish = _delta(doc)
            if finish is not None:
                self._finish = finish
            if output:
                index = self._chunks + events
                events += 1
                if answer is None:
                    self._reasoning.append(index)  # reasoning, or a tool call's fragment
                elif self._answer_at is None:
                    self._answer_at = index
                if answer and self._text is not None:
                    self._text.append(answer)
                if self._counter is not None:
                    self._counted.append(max(1, self._counter.count(output)))
                per_event = self._per_event
                if per_event is not None:
                    if usage is None or usage <= (before or 0):
                        self._per_event = None  # not said, or not growing: not known
                    else:
                        per_event.append(usage - (before or 0))
        self._chunks += events
        return events

    def finish(self) -> ParsedResponse:
        finish = self._finish
        if finish is None and not self._done:
            raise IncompleteAnswer(
                f"stream ended after {self._chunks:,} token events with neither a "
                "finish_reason nor [DONE]")
        if not self._chunks:
            said = f" (its usage says {self._usage:,} tokens)" if self._usage else ""
            raise IncompleteAnswer(
                f"stream ended with no answer token (finish_reason "
                f"{finish or MISSING}{', [DONE]' if self._done else ''}){said}")
        text = "".join(self._text) if self._text is not None else None
        per_event = self._per_event if self._per_event and len(self._per_event) == \
            self._chunks else None
        source = "usage"
        if per_event is None and self._counter is not None:
            per_event, source = self._counted or None, "tokenizer"
        reason, no_done = finish or MISSING, not self._done
        reasoning = self._reasoning_said
        if reasoning is None and self._reasoning:
            reasoning = sum(per_event[i] for i in self._reasoning) if per_event \
                else len(self._reasoning)
        common: dict[str, Any] = {"finish_reason": reason, "no_done": no_done,
                                  "answer_event": self._answer_at,
                                  "reasoning_tokens": reasoning}
        if self._usage is not None:
            return ParsedResponse(self._usage, "usage", text, event_tokens=per_event,
                                  event_source=source, prompt_tokens=self._prompt[0],
                                  cached_tokens=self._prompt[1], **common)
        if self._counter is not None:
            return ParsedResponse(sum(self._counted), "tokenizer", text,
                                  event_tokens=per_event, event_source=source, **common)
        return ParsedResponse(self._chunks, "chunks", text, **common)


def _usage_tokens(doc: dict) -> int | None:
    usage = doc.get("usage")
    if not isinstance(usage, dict) or usage.get("completion_tokens") is None:
        return None
    n = usage["completion_tokens"]
    if type(n) is not int or n < 0:  # not bool, not negative: a server can lie
        raise ProtocolError(f"usage.completion_tokens is not a count: {str(n)[:20]!r}")
    return n


def _reasoning_usage(doc: dict) -> int | None:
    """usage.completion_tokens_details.reasoning_tokens, when a count."""
    usage = doc.get("usage")
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    n = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return n if type(n) is int and n >= 0 else None


def _prompt_usage(doc: dict) -> tuple[int | None, int | None]:
    """(usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens), each
    None when absent or not a count (these only inform: never an error)."""
    usage = doc.get("usage")
    if not isinstance(usage, dict):
        return None, None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None

    def count(v: object) -> int | None:
        return v if type(v) is int and v >= 0 else None
    return count(usage.get("prompt_tokens")), count(cached)


def _delta(doc: dict) -> tuple[str | None, str | None, str | None]:
    """(answer text, any generated output: answer, reasoning or a tool call's
    fragment, finish_reason) of one stream chunk's first choice."""
    choices = doc.get("choices")
    if not choices or not isinstance(choices, list):
        return None, None, None
    c = choices[0]
    if not isinstance(c, dict):
        raise ProtocolError("stream chunk has a malformed `choices` entry")
    finish = c.get("finish_reason")
    finish = finish if isinstance(finish, str) and finish else None
    delta = c.get("delta")
    if not isinstance(delta, dict):  # completions: the text is on the choice
        text = c.get("text")
        text = text if isinstance(text, str) and text else None
        return text, text, finish
    answer = delta.get("content")
    answer = answer if isinstance(answer, str) and answer else None
    if answer is not None:
        return answer, answer, finish
    for key in ("reasoning_content", "reasoning"):  # vLLM/SGLang, then OpenRouter/vLLM 0.10+
        if isinstance(thought := delta.get(key), str) and thought:
            return None, thought, finish
    calls = delta.get("tool_calls")
    if isinstance(calls, list) and calls:
        parts = [f for call in calls if isinstance(call, dict)
                 for f in (call.get("function"),) if isinstance(f, dict)]
        fragment = "".join(str(f.get("name") or "") + str(f.get("arguments") or "")
                           for f in parts)
        return None, fragment or " ", finish  # a call's opening chunk is output too
    return None, None, finish
