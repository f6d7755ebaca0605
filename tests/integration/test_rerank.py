"""Rerank and score against the simulator, whose cost per document is
declared: each API's shape, the latency the model predicts for N documents,
per-document latency, and a reply with the wrong number of scores failing
its check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.recording import recording_sim
from support.run import RunWorkload, WriteWorkload, cli

pytestmark = [pytest.mark.slow]

SIM: dict[str, Any] = {"rerank_ms": 5, "rerank_ms_per_doc": 0.5, "rerank_ms_per_token": 0.01}


def rerank(api: str = "vllm", docs: int | dict = 20, words: int = 8,
           **extra: Any) -> dict[str, Any]:
    return {"name": "rank", "kind": "rerank", "api": api, "query_tokens": 4,
            "documents": docs, "document_tokens": words, **extra}


def workload(scenarios: list[dict], sim: dict | None = None, rate: float = 10,
             duration: float = 2) -> dict[str, Any]:
    return {"name": "rerank", "duration": duration, "warmup": 0,
            "arrival": {"process": "constant", "rate": rate}, "scenarios": scenarios,
            "simulator": {**SIM, **(sim or {})}, "slos": ["error_rate < 1%"]}


def modelled_ms(docs: int, words: int) -> float:
    """The simulator's cost: per pair, the query's words (the seq prefix and
    4 words) and the document's (its seq.i prefix and `words` words)."""
    tokens = docs * ((1 + 4) + (1 + words))
    return SIM["rerank_ms"] + SIM["rerank_ms_per_doc"] * docs + SIM["rerank_ms_per_token"] * tokens


@pytest.mark.timing
@pytest.mark.parametrize("docs", [4, 128])
def test_latency_is_the_modelled_cost_of_n_documents(run: RunWorkload, docs: int) -> None:
    """p50 within max(1 ms, 2%) of the declared cost, beyond the machine's own
    loopback and timer overhead, measured in the same run by an embeddings
    twin of a known 5-ms cost."""
    twin = {"name": "twin", "kind": "openai-embeddings", "prompt_tokens": 1}
    result, _ = run(workload([rerank(docs=docs), twin],
                             sim={"embedding_ms": SIM["rerank_ms"],
                                  "embedding_ms_per_token": 0}, rate=20))
    lat = result["series"]["latency"]
    overhead = lat["scenario:twin"]["p50"] - SIM["rerank_ms"]
    measured = lat["scenario:rank"]["p50"] - overhead
    want = modelled_ms(docs, 8)
    print(f"{docs} documents: p50 {lat['scenario:rank']['p50']} ms, overhead {overhead:.2f} ms, "
          f"modelled {want:.2f} ms")
    assert measured == pytest.approx(want, abs=max(1.0, 0.02 * want))
    per_doc = result["series"]["latency_per_doc"]["scenario:rank"]["p50"]
    assert per_doc == pytest.approx(lat["scenario:rank"]["p50"] / docs, rel=0.05)


@pytest.mark.parametrize("api", ["vllm", "cohere", "tei", "score"])
def test_each_api_answers_one_score_a_document_in_its_order(run: RunWorkload, api: str) -> None:
    spec = rerank(api=api, docs={"dist": "uniform", "min": 2, "max": 12})
    result, _ = run(workload([spec]))
    assert result["counts"]["errors"] == 0 and result["counts"]["completed"] >= 19
    assert result["series"]["latency_per_doc"]["all"]["count"] == result["counts"]["completed"]


def test_top_n_asks_for_the_best_few(run: RunWorkload) -> None:
    """Three scores for ten documents; the latency per document is over the ten."""
    result, _ = run(workload([rerank(docs=10, top_n=3)]))
    assert result["counts"]["errors"] == 0 and result["counts"]["completed"] >= 19
    per_doc = result["series"]["latency_per_doc"]["all"]["p50"]
    assert per_doc == pytest.approx(result["series"]["latency"]["all"]["p50"] / 10, rel=0.05)


def test_a_reply_short_of_a_score_fails_its_check(run: RunWorkload) -> None:
    result, _ = run(workload([rerank(docs=6)], sim={"faults": [{"kind": "short_rerank",
                                                                "start": 0}]}), probe=False)
    c, examples = result["counts"], result["errors"]["examples"]
    assert c["completed"] == 0 and result["errors"]["by_kind"]["check_failed"] == c["errors"]
    assert examples["check_failed"][0] == "5 scores for the 6 asked"


def test_queries_and_documents_from_datasets(run: RunWorkload, tmp_path: Path) -> None:
    """A JSONL column of questions and a Parquet column of passages, as a
    retrieval benchmark's files hold them: the server is sent each request's
    query from the questions and 2-6 distinct passages from the corpus, the
    draws seeded (a second run sends the same bodies)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    questions = [f"which bridge crosses river {i}" for i in range(5)]
    passages = [f"passage {i} tells of " + "bridges " * (i % 7 + 1) for i in range(40)]
    rows = [{"question": q, "id": i} for i, q in enumerate(questions)] + [{"id": 9}]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.table({"n": list(range(40)), "text": passages}), tmp_path / "p.parquet")
    spec = {**workload([rerank(docs={"dist": "uniform", "min": 2, "max": 6},
                               queries={"path": "q.jsonl", "column": "question"},
                               corpus={"path": "p.parquet", "column": "text"})])}
    del spec["simulator"]
    sent = []
    for _ in range(2):
        with recording_sim(**SIM) as rec:
            result, _ = run({**spec, "target": rec.url})
            sent.append([e.body for e in rec.posts() if e.path == "/v1/rerank"])
        assert result["counts"]["errors"] == 0 and result["counts"]["completed"] >= 19
    bodies = sent[0]
    assert len(bodies) >= 20 and sent[1] == bodies
    assert {b["query"] for b in bodies} <= set(questions) and len({b["query"] for b in bodies}) > 1
    for b in bodies:
        assert 2 <= len(b["documents"]) <= 6 and set(b["documents"]) <= set(passages)
        assert len(set(b["documents"])) == len(b["documents"])  # no passage twice in one
    assert {len(b["documents"]) for b in bodies} == {2, 3, 4, 5, 6}


@pytest.mark.parametrize(("row", "said"), [
    ({"text": 7}, "rerank corpus {path}: value 2 of `text` is not a text (int: '7')"),
    ({"passage": "x"}, "rerank corpus {path}: no row has a `text`"),
], ids=["a number", "no such column"])
def test_a_corpus_that_is_not_texts_exits_2_before_the_run(tmp_path: Path,
                                                           workload_file: WriteWorkload,
                                                           row: dict, said: str) -> None:
    rows = [{"text": "a passage"}, row] if "text" in row else [row]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = workload_file(workload([rerank(corpus={"path": "c.jsonl", "column": "text"})]))
    proc = cli("run", str(path), "--out", str(tmp_path / "out"), "-q")
    assert proc.returncode == 2, proc.stderr
    assert said.format(path=tmp_path / "c.jsonl") in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "run.json").exists()


def test_rerank_and_vision_in_a_distributed_run(run: RunWorkload) -> None:
    """Two local workers build and send rerank and image requests as one
    process does: every answer passes its checks, per-document latency is
    recorded for each rerank, and the uploads are counted."""
    from loadkit.distributed.fleet import FleetOptions

    vision = {"name": "look", "kind": "openai-chat", "prompt_tokens": 8, "max_tokens": 2,
              "media": {"images": {"sizes": ["64x64"], "formats": ["png"], "variants": 1}}}
    result, _ = run(workload([rerank(docs=6), vision], rate=20),
                    fleet=FleetOptions(workers=2, local=True))
    c = result["counts"]
    assert c["errors"] == 0 and c["completed"] >= 38
    assert {w["status"] for w in result["distribution"]["workers"]} == {"done"}
    assert result["series"]["latency_per_doc"]["all"]["count"] == \
        result["series"]["latency"]["scenario:rank"]["count"]
    # What the workers' requests carried, added up: every vision request's image.
    media = result["media"]["look"]
    assert c["sent_bytes"] > 0 and media["images"] == media["requests"] >= \
        result["series"]["latency"]["scenario:look"]["count"]
    assert media["distinct_images"] == 1  # one variant, drawn by both workers


@pytest.mark.timing  # a generator behind its schedule would end the search (exit 3)
def test_capacity_search_finds_the_rerank_seat_s_saturation(tmp_path: Path) -> None:
    """One batch seat, 40 documents of 8 words a request: 30.6 ms a request,
    so 32.7 req/s saturate it; `loadkit capacity` finds that within 10%."""
    docs, words = 40, 8
    saturation = 1000 / modelled_ms(docs, words)
    spec = {**workload([rerank(docs=docs, words=words)], sim={"max_num_seqs": 1}, rate=25),
            "seed": 4,
            "slos": ["latency p90 < 60ms", "error_rate < 5%"]}
    path = tmp_path / "w.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = tmp_path / "out"
    proc = cli("capacity", str(path), "--min", "30", "--max", "36", "--precision", "15%",
               "--probe", "2s", "--out", str(out), timeout=200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found = json.loads((out / "capacity.json").read_text())
    lo, hi = found["capacity"]["passed"], found["capacity"]["failed"]
    print(f"rerank: saturation {saturation:.1f} req/s by the model; found [{lo:.1f}, {hi:.1f})"
          f" in {len(found['probes'])} probes")
    assert lo <= saturation * 1.10 and hi >= saturation * 0.90
