"""Rerank and score on the simulator, over a real loopback socket: vLLM's
``/v1/rerank``, ``/rerank`` and ``/score``, Cohere's ``/v2/rerank`` and
TEI's ``/rerank`` (a body with ``texts``): each answer's shape, scores that
are the declared hash of (seed, query, document) and ordered by them, the
``short_rerank`` fault, the refusals, and a latency that is the declared
cost ``rerank_ms + rerank_ms_per_doc x N + rerank_ms_per_token x T`` at
p50, alone and queued behind a full batch."""

from __future__ import annotations

import asyncio
import hashlib
import random
import statistics
import time
from typing import Any

import httpx
import pytest

from support.sim import Live, gauge, histogram, live_sim, run_async, timed_post

QUERY = "which city has the most bridges"
DOCS = [f"document {i} tells of {' '.join(['river'] * (i % 5))} bridges in town {i}"
        for i in range(12)]


def relevance(query: str, doc: str, seed: int = 0) -> float:
    """The declared score, written out here independently of the simulator."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{query}\0{doc}".encode()).digest()[:8],
                          "big") / 2.0**64


def words(text: str) -> int:
    return max(1, len(text.split()))


def pair_tokens(query: str, docs: list[str]) -> int:
    return sum(words(query) + words(d) for d in docs)


def ranked(query: str, docs: list[str]) -> list[int]:
    return sorted(range(len(docs)), key=lambda i: (-relevance(query, docs[i]), i))


async def post(live: Live, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    _, status, _, doc = await timed_post(live, body, path)
    return status, doc


# -- shapes and ordering ------------------------------------------------------------------


def test_vllm_rerank_shape_and_ordering() -> None:
    """/v1/rerank and /rerank: every document, highest relevance first, its
    text, usage.total_tokens; documents as strings or {text}; top_n cuts."""
    async def go() -> list[tuple[int, Any]]:
        async with live_sim() as live:
            body = {"model": "m", "query": QUERY, "documents": DOCS}
            return [await post(live, "/v1/rerank", body),
                    await post(live, "/rerank", {**body, "documents": [{"text": d} for d in DOCS]}),
                    await post(live, "/v1/rerank", {**body, "top_n": 5}),
                    await post(live, "/rerank", {**body, "top_n": 0})]

    (s1, full), (s2, objects), (s3, top), (s4, zero) = run_async(go())
    assert (s1, s2, s3, s4) == (200, 200, 200, 200)
    order = ranked(QUERY, DOCS)
    assert set(full) == {"id", "model", "usage", "results"} and full["id"].startswith("rerank-")
    assert full["usage"] == {"total_tokens": pair_tokens(QUERY, DOCS)}
    assert [r["index"] for r in full["results"]] == order
    assert [r["relevance_score"] for r in full["results"]] == [relevance(QUERY, DOCS[i])
                                                               for i in order]
    assert [r["document"] for r in full["results"]] == [{"text": DOCS[i]} for i in order]
    assert objects["results"] == full["results"] == zero["results"]
    assert top["results"] == full["results"][:5]


def test_cohere_rerank_shape() -> None:
    async def go() -> list[tuple[int, Any]]:
        async with live_sim() as live:
            body = {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}
            return [await post(live, "/v2/rerank", body),
                    await post(live, "/v2/rerank", {**body, "top_n": 3,
                                                    "return_documents": True})]

    (s1, full), (s2, top) = run_async(go())
    assert (s1, s2) == (200, 200)
    order = ranked(QUERY, DOCS)
    assert set(full) == {"id", "results", "meta"}
    assert full["results"] == [{"index": i, "relevance_score": relevance(QUERY, DOCS[i])}
                               for i in order]
    assert full["meta"]["billed_units"] == {"search_units": 1}
    assert full["meta"]["tokens"] == {"input_tokens": pair_tokens(QUERY, DOCS)}
    assert top["results"] == [{**r, "document": {"text": DOCS[r["index"]]}}
                              for r in full["results"][:3]]


def test_tei_rerank_is_told_apart_by_texts() -> None:
    """TEI's body has `texts`: its answer is a bare list of {index, score}."""
    async def go() -> list[tuple[int, Any]]:
        async with live_sim() as live:
            return [await post(live, "/rerank", {"query": QUERY, "texts": DOCS}),
                    await post(live, "/rerank", {"query": QUERY, "texts": DOCS,
                                                 "return_text": True})]

    (s1, bare), (s2, texts) = run_async(go())
    assert (s1, s2) == (200, 200)
    order = ranked(QUERY, DOCS)
    assert bare == [{"index": i, "score": relevance(QUERY, DOCS[i])} for i in order]
    assert texts == [{**r, "text": DOCS[r["index"]]} for r in bare]


def test_score_pairs_in_input_order() -> None:
    """/score and /v1/score: one text against many, pairwise, or one pair; data
    in input order, the same numbers as rerank's."""
    left = ["a b", "c d e", "f"]

    async def go() -> list[tuple[int, Any]]:
        async with live_sim() as live:
            return [await post(live, "/score", {"model": "m", "text_1": QUERY, "text_2": DOCS}),
                    await post(live, "/v1/score", {"model": "m", "text_1": left,
                                                   "text_2": DOCS[:3]}),
                    await post(live, "/v1/score", {"model": "m", "text_1": "x", "text_2": "y"})]

    (s1, many), (s2, pairwise), (s3, one) = run_async(go())
    assert (s1, s2, s3) == (200, 200, 200)
    assert set(many) == {"id", "object", "created", "model", "data", "usage"}
    assert many["object"] == "list" and many["id"].startswith("score-")
    assert many["data"] == [{"index": i, "object": "score", "score": relevance(QUERY, d)}
                            for i, d in enumerate(DOCS)]
    assert many["usage"]["total_tokens"] == pair_tokens(QUERY, DOCS)
    assert [d["score"] for d in pairwise["data"]] == [relevance(q, d)
                                                      for q, d in zip(left, DOCS[:3])]
    assert pairwise["usage"]["prompt_tokens"] == sum(words(q) + words(d)
                                                     for q, d in zip(left, DOCS[:3]))
    assert [d["score"] for d in one["data"]] == [relevance("x", "y")]


def test_scores_follow_the_seed_and_metrics_count_documents() -> None:
    async def go(seed: int) -> tuple[Any, dict[str, float]]:
        async with live_sim(seed=seed) as live:
            _, doc = await post(live, "/v1/rerank", {"query": QUERY, "documents": DOCS})
            await post(live, "/score", {"text_1": QUERY, "text_2": DOCS[:4]})
            return doc, await live.metrics()

    seeded, m = run_async(go(7))
    assert [r["relevance_score"] for r in seeded["results"]] == sorted(
        (relevance(QUERY, d, seed=7) for d in DOCS), reverse=True)
    assert gauge(m, "loadkit_sim_scored_documents_total") == len(DOCS) + 4
    assert gauge(m, "vllm:prompt_tokens_total") == (pair_tokens(QUERY, DOCS)
                                                    + pair_tokens(QUERY, DOCS[:4]))
    assert gauge(m, "loadkit_sim_requests_total") == 2


def test_short_rerank_answers_one_score_fewer() -> None:
    """The fault, for a client's "wrong number of scores" check: the lowest
    ranked result (score: the last) is missing, in every route."""
    async def go() -> tuple[list[Any], dict[str, float]]:
        async with live_sim(faults=[{"kind": "short_rerank"}]) as live:
            out = [(await post(live, path, body))[1] for path, body in (
                ("/v1/rerank", {"query": QUERY, "documents": DOCS}),
                ("/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": 4}),
                ("/v2/rerank", {"query": QUERY, "documents": DOCS}),
                ("/rerank", {"query": QUERY, "texts": DOCS}),
                ("/score", {"text_1": QUERY, "text_2": DOCS}))]
            return out, await live.metrics()

    (vllm, top, cohere, tei, score), m = run_async(go())
    order = ranked(QUERY, DOCS)
    assert [r["index"] for r in vllm["results"]] == order[:-1]
    assert [r["index"] for r in top["results"]] == order[:3]
    assert [r["index"] for r in cohere["results"]] == order[:-1]
    assert [r["index"] for r in tei] == order[:-1]
    assert [d["index"] for d in score["data"]] == list(range(len(DOCS) - 1))
    assert m['loadkit_sim_faults_injected_total{kind="short_rerank"}'] == 5


BAD = [
    ("/v1/rerank", {"documents": DOCS}, 400, "query"),
    ("/v1/rerank", {"query": QUERY, "documents": []}, 400, "documents"),
    ("/v1/rerank", {"query": QUERY, "documents": [1, 2]}, 400, "documents"),
    ("/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": -1}, 400, "top_n"),
    ("/v2/rerank", {"query": QUERY, "documents": DOCS, "top_n": 0}, 400, "top_n"),
    ("/rerank", {"query": QUERY, "texts": [{"text": "a"}]}, 422, "texts"),
    ("/score", {"text_1": ["a", "b"], "text_2": ["a", "b", "c"]}, 400, "text_1"),
    ("/v1/score", {"text_1": "a"}, 400, "text_2"),
]


@pytest.mark.parametrize("path,body,status,needle", BAD,
                         ids=[f"{p}-{n}-{i}" for i, (p, _, _, n) in enumerate(BAD)])
def test_bad_bodies_are_refused_in_each_servers_shape(path: str, body: dict[str, Any],
                                                      status: int, needle: str) -> None:
    async def go() -> tuple[int, Any]:
        async with live_sim() as live:
            return await post(live, path, body)

    got, doc = run_async(go())
    assert got == status, doc
    message = {"/v2/rerank": lambda d: d["message"],
               "/rerank": lambda d: d["error"] if isinstance(d["error"], str) else None}.get(
        path, lambda d: d["error"]["message"])(doc)
    if path == "/rerank":
        assert doc["error_type"] == "Validation"
    assert needle in message, doc


def test_a_request_beyond_the_kv_cache_is_refused() -> None:
    async def go() -> tuple[int, Any]:
        async with live_sim(kv_cache_tokens=50) as live:
            return await post(live, "/v1/rerank", {"query": QUERY, "documents": DOCS})

    status, doc = run_async(go())
    assert status == 400 and doc["error"]["code"] == "context_length_exceeded", doc


# -- the cost model -------------------------------------------------------------------

COST: dict[str, Any] = {"rerank_ms": 5.0, "rerank_ms_per_doc": 0.5, "rerank_ms_per_token": 0.02}


def model_ms(query: str, docs: list[str]) -> float:
    return (COST["rerank_ms"] + COST["rerank_ms_per_doc"] * len(docs)
            + COST["rerank_ms_per_token"] * pair_tokens(query, docs))


ROUTES = {
    "vllm /v1/rerank": ("/v1/rerank", lambda q, d: {"model": "m", "query": q, "documents": d}),
    "vllm /rerank": ("/rerank", lambda q, d: {"model": "m", "query": q, "documents": d}),
    "cohere /v2/rerank": ("/v2/rerank", lambda q, d: {"model": "m", "query": q, "documents": d}),
    "tei /rerank": ("/rerank", lambda q, d: {"query": q, "texts": d}),
    "vllm /score": ("/score", lambda q, d: {"model": "m", "text_1": q, "text_2": d}),
    "vllm /v1/score": ("/v1/score", lambda q, d: {"model": "m", "text_1": q, "text_2": d}),
}
TWIN = "embeddings twin"


async def _latency_ms(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    sent = time.perf_counter()
    r = await client.post(url, json=body)
    r.json()
    assert r.status_code == 200, r.text
    return 1000 * (time.perf_counter() - sent)


@pytest.mark.timing  # a p50 to the millisecond: beside a timing neighbour it moves by 2 ms
@pytest.mark.slow
def test_latency_is_the_modelled_cost_at_p50() -> None:
    """Each route, 4 and 64 documents, on an idle simulator, by a plain httpx
    client: the p50 of (latency - declared cost) is never negative, and within
    max(1 ms, 2%) of a *twin*'s, an embeddings request on the same server whose
    declared cost is the same: what the machine adds to a request of known
    server time (the loopback round trip, HTTP on both sides, the event
    loop's timer) is in both and cancels.

    The event loop waits in whole milliseconds (epoll), so a sleep ends up to
    1 ms late by where its deadline falls in the millisecond: each request's
    last document has 1 to 50 more words (0.02 to 1 ms more, and the twin's
    input as many more tokens), so that every route meets every phase."""
    sizes = {n: DOCS * (n // len(DOCS)) + DOCS[:n % len(DOCS)] for n in (4, 64)}

    async def one_size(docs: list[str]) -> dict[str, list[float]]:
        base = model_ms(QUERY, docs)
        async with live_sim(embedding_ms=base, embedding_ms_per_token=COST["rerank_ms_per_token"],
                            **COST) as live, httpx.AsyncClient(timeout=10) as client:
            emb = live.url + "/v1/embeddings"
            await _latency_ms(client, emb, {"input": "warm", "dimensions": 1})  # the connection
            excess: dict[str, list[float]] = {name: [] for name in [TWIN, *ROUTES]}
            order = list(excess)
            rng = random.Random(len(docs))
            # Rounds, each in a new order: every route meets the same conditions as
            # its twin, and none has a fixed place.
            for _ in range(25 if len(docs) < 16 else 15):
                rng.shuffle(order)
                for name in order:
                    more = rng.randint(1, 50)  # words: 0.02 ms each
                    cost = base + COST["rerank_ms_per_token"] * more
                    if name == TWIN:  # `more` tokens of 4 characters; one dimension to make
                        body = {"input": "abcd" * more, "dimensions": 1}
                        excess[name].append(await _latency_ms(client, emb, body) - cost)
                    else:
                        path, make = ROUTES[name]
                        longer = [*docs[:-1], docs[-1] + " more" * more]
                        excess[name].append(await _latency_ms(client, live.url + path,
                                                              make(QUERY, longer)) - cost)
            return excess

    async def go() -> dict[int, dict[str, list[float]]]:
        return {n: await one_size(docs) for n, docs in sizes.items()}

    results = run_async(go(), timeout=60)
    failures = []
    for n, got in results.items():
        model, twin = model_ms(QUERY, sizes[n]), statistics.median(got[TWIN])
        print(f"\nN={n}: model {model:.3f} ms (+0.02 to 1); twin: the machine adds {twin:.3f} ms")
        for name in ROUTES:
            p50 = statistics.median(got[name])
            # Against the twin of the same round (the same moment of a busy machine).
            paired = statistics.median(r - t for r, t in zip(got[name], got[TWIN]))
            print(f"  {name:18} p50 latency - model {p50:+.3f} ms, - twin's {paired:+.3f} ms")
            if not (p50 >= 0 and abs(paired) <= max(1.0, 0.02 * model)):
                failures.append((name, n, p50, paired))
    assert not failures, failures


@pytest.mark.timing
def test_rerank_queues_for_a_batch_seat() -> None:
    """max_num_seqs 1: three requests sent at once hold the one seat in turn,
    each for its cost. On the server's clock: each is charged its cost exactly
    (inference time), and its wait is the rest of its end-to-end time; the
    waits add up to 0 + 1 + 2 costs less how much later than the first the
    others arrived, which only the server knows (a few ms on a busy loop), so
    they are held between one cost and three. The client sees the k-th end no
    sooner than k costs: served one at a time."""
    docs = DOCS[:8]

    async def go() -> tuple[list[float], dict[str, float], dict[str, float]]:
        async with live_sim(max_num_seqs=1, **COST) as live:
            body = {"query": QUERY, "documents": docs}
            # Three keep-alive connections, open before the round: a TCP
            # connect inside it would delay an arrival (and shorten its wait).
            await asyncio.gather(*(post(live, "/v1/rerank", body) for _ in range(3)))
            before = await live.metrics()
            t0 = live.now()

            async def one() -> float:
                await post(live, "/v1/rerank", body)
                return 1000 * (live.now() - t0)
            ends = sorted(await asyncio.gather(one(), one(), one()))
            return ends, before, await live.metrics()

    ends, before, after = run_async(go())
    cost = model_ms(QUERY, docs)
    def added(name: str) -> tuple[float, float]:  # (count, ms) over the round
        (n0, s0), (n1, s1) = (histogram(m, f"vllm:{name}_seconds") for m in (before, after))
        return n1 - n0, 1000 * (s1 - s0)

    (count, queued), (_, charged), (_, e2e) = (
        added(n) for n in ("request_queue_time", "request_inference_time", "e2e_request_latency"))
    print(f"ends {[round(e, 2) for e in ends]} ms; cost {cost:.2f} ms; queued "
          f"{queued:.3f} ms in all")
    assert count == 3 and charged == pytest.approx(3 * cost, abs=0.003)
    assert e2e == pytest.approx(queued + charged, abs=0.003)
    assert cost <= queued <= 3 * cost + 0.001, (queued, cost)
    # Never sooner than the model (what the machine adds only makes them later,
    # and not by the same amount: one client reads all three on a busy loop).
    for k, end in enumerate(ends, 1):
        assert end >= k * cost, (ends, cost)
