"""Exact token counts with a tokenizer (issue 15, item 4), on a tiny BPE
trained offline in the test: prompts, prefix blocks, streamed deltas."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from loadkit.protocols.generation import blocks_text, prepare
from loadkit.protocols.openai import OpenAIStream
from loadkit.workload.scenarios import GenerationScenario
from loadkit.workload.tokenizer import Counter, find_tokenizer, load
from loadkit.workload.traces import TraceRow
from support.tokenizer import train


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Counter:
    path = train(tmp_path_factory.mktemp("tok") / "tokenizer.json", vocab=400)
    return Counter(load(path.read_text()))


@pytest.mark.parametrize("n", [1, 7, 50, 333])
def test_a_generated_prompt_is_exactly_n_tokens(counter: Counter, n: int) -> None:
    s = GenerationScenario(name="c", kind="openai-chat", stream=False)
    req = prepare(s, {}, "seed", counter=counter)
    for seq in (1, 42, 99_999):  # the request number's digits are in the count
        body, _ = req.build_body(n, 8, seq)
        assert body is not None
        content = json.loads(body)["messages"][0]["content"]
        assert counter.count(content) == n, (n, seq, content[:60])  # exactly, no template


def test_trace_blocks_are_exactly_512_tokens_and_shared_by_id(counter: Counter) -> None:
    a = blocks_text((1, 2, 3), 3 * 512, counter).decode()
    b = blocks_text((1, 2, 9), 2 * 512 + 100, counter).decode()
    ids_a = counter.tokenizer.encode(a, add_special_tokens=False).ids
    ids_b = counter.tokenizer.encode(b, add_special_tokens=False).ids
    assert len(ids_a) == 3 * 512 and len(ids_b) == 2 * 512 + 100
    shared = len(os.path.commonprefix([ids_a, ids_b]))
    assert shared == 2 * 512  # the two common blocks, and no more
    assert TraceRow(0.0, 3, 1, (1,)).blocks == (1,)


def test_streamed_text_is_counted_in_tokens(counter: Counter) -> None:
    stream = OpenAIStream(counter=counter)
    events = [" the of and", " to", " in is that for"]
    docs = [{"choices": [{"delta": {"content": t}}]} for t in events]
    stream.feed(b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs)
                + b"data: [DONE]\n\n")
    parsed = stream.finish()
    assert parsed.event_source == "tokenizer" and parsed.token_source == "tokenizer"
    assert parsed.event_tokens == [counter.count(t) for t in events]
    assert parsed.output_tokens == sum(parsed.event_tokens)


def test_a_whole_answer_is_counted_in_tokens(counter: Counter) -> None:
    """Non-streamed answers without `usage` are counted by the tokenizer too,
    and an Anthropic answer's thinking with it (they read 0 tokens, source
    `none`, in chat and Anthropic alike: an audit). A server's usage wins."""
    text, thought = " the of and to in", " is that for"
    chat = prepare(GenerationScenario(name="c", kind="openai-chat", stream=False), {}, "s",
                   counter=counter).parse_body
    p = chat(json.dumps({"choices": [{"message": {"content": text}}]}).encode())
    assert (p.output_tokens, p.token_source) == (counter.count(text), "tokenizer")
    said = chat(json.dumps({"choices": [{"message": {"content": text}}],
                            "usage": {"completion_tokens": 99}}).encode())
    assert (said.output_tokens, said.token_source) == (99, "usage")
    claude = prepare(GenerationScenario(name="a", kind="anthropic-messages", stream=False,
                                        model="m"), {}, "s", counter=counter).parse_body
    p = claude(json.dumps({"content": [{"type": "thinking", "thinking": thought},
                                       {"type": "text", "text": text}]}).encode())
    assert p.output_tokens == counter.count(text) + counter.count(thought)
    assert p.reasoning_tokens == counter.count(thought) and p.token_source == "tokenizer"


def test_a_model_name_is_found_in_the_local_cache_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: Counter) -> None:
    snap = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "tokenizer.json").write_text(counter.tokenizer.to_str())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert find_tokenizer("acme/tiny", tmp_path) == snap / "tokenizer.json"
    from loadkit.errors import InputError
    with pytest.raises(InputError, match="never downloads"):
        find_tokenizer("acme/absent", tmp_path)
