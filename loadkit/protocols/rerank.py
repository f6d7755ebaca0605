"""Rerank and score: a query and N documents a request, in four servers' shapes.

vLLM's `/v1/rerank` and Cohere's `/v2/rerank` take `{model, query,
documents, top_n}` and answer `results: [{index, relevance_score}]`, best
first; Hugging Face TEI's `/rerank` takes `{query, texts}` and answers a
bare list `[{index, score}]`, best first; vLLM's `/v1/score` takes `{model,
text_1, text_2: [...]}` and answers `data: [{index, score}]` in the
documents' order. The number of documents and their lengths are drawn per
request (seeded); the texts are made to those lengths, or drawn from a
dataset's column (`queries`, `corpus`: read before the clock starts, a
request's documents distinct while the corpus has enough). The answer must
hold one score per document (or the best `top_n`), each index once, in the
order its API promises: otherwise a `check_failed`. Latency is also recorded
per document (`latency_per_doc`).
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson

from loadkit.arrivals.schedule import sample_tokens
from loadkit.engine.adapter import ParsedResponse, PreparedRequest, ProtocolError
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.text import PromptText
from loadkit.workload.dataset_columns import column_texts
from loadkit.workload.rerank_spec import RerankScenario

CORPUS_ROWS = 100_000  # a corpus larger than this is drawn from its first rows


def prepare(scenario: RerankScenario, headers: dict[str, str], seed: str) -> PreparedRequest:
    text = PromptText(f"{seed}:{scenario.name}:rerank")
    rng = random.Random(f"{seed}:{scenario.name}:documents")
    api, top_n = scenario.api, scenario.top_n

    queries = None if scenario.queries is None else column_texts(
        scenario.queries, CORPUS_ROWS, "rerank queries")
    corpus = None if scenario.corpus is None else column_texts(
        scenario.corpus, CORPUS_ROWS, "rerank corpus")

    def documents(seq: int, n: int) -> list[str]:
        if corpus is None:
            return [f"{seq}.{i}: " + text.tokens(sample_tokens(scenario.document_tokens,
                                                               rng)).decode()
                    for i in range(n)]
        if n <= len(corpus):
            return rng.sample(corpus, n)
        return [rng.choice(corpus) for _ in range(n)]

    def build(prompt_tokens: int | None, max_tokens: int | None,
              seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, None]:
        query = rng.choice(queries) if queries is not None else \
            f"{seq}: " + text.tokens(sample_tokens(scenario.query_tokens, rng)).decode()
        docs = documents(seq, sample_tokens(scenario.documents, rng))
        body: dict[str, Any]
        if api == "tei":
            body = {"query": query, "texts": docs}
        elif api == "score":
            body = {"model": scenario.model, "text_1": query, "text_2": docs}
        else:
            body = {"model": scenario.model, "query": query, "documents": docs}
            if top_n is not None:
                body["top_n"] = top_n
        return json.dumps(body).encode(), None

    def asked(body: bytes) -> tuple[int, int]:
        """The documents a request sends, and the scores it asks for: one a
        document, or the best top_n."""
        doc = orjson.loads(body)
        n = len(doc.get("texts") or doc.get("documents") or doc.get("text_2") or ())
        return n, min(n, top_n) if top_n is not None else n

    def parse(raw: bytes) -> ParsedResponse:
        doc = answer_json(raw)
        scores = _scores(doc, api)
        return ParsedResponse(doc=doc, items=len(scores), item_problem=_disorder(scores, api),
                              item_top=max((i for i, _ in scores), default=None))

    return PreparedRequest(method="POST", path=scenario.request_path,
                           headers={"Content-Type": "application/json", **headers},
                           build_body=build, new_stream_parser=None,
                           parse_body=parse, check=make_check(scenario.checks),
                           ok_status=ok_statuses(scenario.checks.status), items_in=asked)


def _scores(doc: Any, api: str) -> list[tuple[int, float]]:
    """(index, score) pairs in the answer's order; ProtocolError when the
    shape is not its API's."""
    rows = doc if api == "tei" else (doc.get("data") if api == "score" else doc.get("results")) \
        if isinstance(doc, dict) else None
    key = "relevance_score" if api in ("vllm", "cohere") else "score"
    if not isinstance(rows, list):
        where = {"tei": "a list", "score": "`data`"}.get(api, "`results`")
        raise ProtocolError(f"expected the scores in {where}")
    out = []
    for row in rows:
        index, score = (row.get("index"), row.get(key)) if isinstance(row, dict) else (None, None)
        if type(index) is not int or isinstance(score, bool) \
                or not isinstance(score, int | float):
            raise ProtocolError(f"a result without an integer `index` and a numeric `{key}`: "
                                f"{str(row)[:80]}")
        out.append((index, float(score)))
    return out


def _disorder(scores: list[tuple[int, float]], api: str) -> str | None:
    """Why the scores are not in the order their API promises, or None."""
    indexes = [i for i, _ in scores]
    if len(set(indexes)) != len(indexes):
        return "a document scored twice"
    if indexes and min(indexes) < 0:
        return f"a document index below 0 ({min(indexes)})"
    if api == "score":
        return None if indexes == sorted(indexes) else "scores not in the documents' order"
    values = [s for _, s in scores]
    return None if values == sorted(values, reverse=True) else "results not ordered by relevance"
