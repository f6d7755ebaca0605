"""Rerank and score requests, as workload files write them.

    - name: rank
      kind: rerank
      api: vllm            # vllm (/v1/rerank) | cohere (/v2/rerank) | tei (/rerank) | score (/v1/score)
      query_tokens: 16
      documents: {dist: uniform, min: 8, max: 64}   # per request
      document_tokens: {dist: lognormal, median: 120, sigma: 0.5}
      top_n: 5             # vLLM and Cohere: answer the best 5 only
      # queries: {path: questions.jsonl, column: question}   # texts instead of query_tokens
      # corpus: {path: passages.parquet, column: text}       # texts instead of document_tokens
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from loadkit.workload.dataset_columns import Column
from loadkit.workload.scenarios import Tokens, _Scenario

RERANK_PATHS = {"vllm": "/v1/rerank", "cohere": "/v2/rerank", "tei": "/rerank",
                "score": "/v1/score"}


class RerankScenario(_Scenario):
    """A query and N documents a request; the answer must score each (or the
    best `top_n`), ordered by relevance (score: in the documents' order)."""

    kind: Literal["rerank"]
    api: Literal["vllm", "cohere", "tei", "score"] = "vllm"
    model: str | None = None  # None: the one model the target's GET /v1/models lists
    query_tokens: Tokens = 16
    documents: Tokens = 16
    document_tokens: Tokens = 64
    top_n: int | None = Field(default=None, gt=0)
    path: str | None = None  # default: the api's
    queries: Column | None = None  # a dataset's column of queries, instead of query_tokens
    corpus: Column | None = None  # a dataset's column of documents, instead of document_tokens

    @model_validator(mode="after")
    def _consistent(self) -> RerankScenario:
        if self.top_n is not None and self.api not in ("vllm", "cohere"):
            raise ValueError("top_n is vLLM's and Cohere's rerank option")
        if self.checks.regex or self.checks.min_output_tokens:
            raise ValueError("rerank answers scores, not text: use checks.status or json_path")
        return self

    @property
    def request_path(self) -> str:
        return self.path or RERANK_PATHS[self.api]
