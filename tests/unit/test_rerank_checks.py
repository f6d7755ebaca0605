"""A rerank or score answer judged as the engine judges it (engine/answer.py):
an index that names no document sent, or a true/false where an index or a
score is due, fails (they passed in every API: an audit)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from loadkit.engine.adapter import ProtocolError
from loadkit.engine.answer import Answer
from loadkit.errors import ErrorKind
from loadkit.protocols import rerank
from loadkit.record.recorder import RequestRecord
from loadkit.workload.rerank_spec import RerankScenario


def judged(results: list[dict[str, Any]], docs: int = 3) -> RequestRecord:
    req = rerank.prepare(RerankScenario(name="r", kind="rerank", documents=docs), {}, "s")
    body, _ = req.build_body(None, None, 1)
    assert body is not None
    rec = RequestRecord("t", "r", "p", 0, 0, body=body)
    answer = Answer(req, rec, 1 << 20)
    answer.status(200, 1)
    answer.body(json.dumps({"results": results}).encode(), 2)
    answer.finish(3)
    return rec


def ranked(indexes: list[Any]) -> list[dict[str, Any]]:
    return [{"index": i, "relevance_score": 1.0 - n / 10} for n, i in enumerate(indexes)]


def test_each_document_scored_once_passes() -> None:
    rec = judged(ranked([2, 0, 1]))
    assert rec.error is None and rec.items == 3


@pytest.mark.parametrize("indexes,said", [
    ([0, 1, 53], "document index 53 of the 3 sent"),
    ([0, -1, 1], "a document index below 0 (-1)"),
    ([0, 1, 1], "a document scored twice"),
])
def test_an_index_that_names_no_document_fails_its_check(indexes: list[int], said: str) -> None:
    rec = judged(ranked(indexes))
    assert (rec.error, rec.message) == (ErrorKind.CHECK_FAILED, said)


@pytest.mark.parametrize("row", [{"index": True, "relevance_score": 0.5},
                                 {"index": 2, "relevance_score": False}])
def test_true_or_false_is_neither_an_index_nor_a_score(row: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError, match="integer `index` and a numeric"):
        judged([*ranked([0, 1]), row])
