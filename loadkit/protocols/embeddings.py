"""OpenAI embeddings: `inputs` texts of about `prompt_tokens` tokens each."""

from __future__ import annotations

import json

from loadkit.engine.adapter import IncompleteAnswer, ParsedResponse, PreparedRequest, ProtocolError
from loadkit.protocols.answer_json import answer_json
from loadkit.protocols.checks import make_check, ok_statuses
from loadkit.protocols.text import PromptText
from loadkit.workload.scenarios import EmbeddingsScenario


def prepare(scenario: EmbeddingsScenario, headers: dict[str, str], seed: str
            ) -> PreparedRequest:
    text = PromptText(f"{seed}:{scenario.name}:prompt")
    inputs = scenario.inputs

    def build(prompt_tokens: int | None, max_tokens: int | None,
              seq: int, blocks: tuple[int, ...] = ()) -> tuple[bytes, None]:
        body = text.tokens(prompt_tokens or 1).decode()
        batch = [f"{seq}.{i}: {body}" for i in range(inputs)]
        return json.dumps({"model": scenario.model,
                           "input": batch if inputs > 1 else batch[0]}).encode(), None

    def parse(raw: bytes) -> ParsedResponse:
        doc = answer_json(raw)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list) or len(data) != inputs:
            raise ProtocolError(f"expected {inputs} embeddings in `data`")
        # An item without its vector is no embedding: a 200 that answered nothing.
        if empty := sum(1 for d in data if not (isinstance(d, dict) and d.get("embedding"))):
            raise IncompleteAnswer(f"{empty} of {inputs} items in `data` have no `embedding`")
        return ParsedResponse(doc=doc)

    return PreparedRequest(method="POST", path=scenario.request_path,
                           headers={"Content-Type": "application/json", **headers},
                           build_body=build, new_stream_parser=None,
                           parse_body=parse, check=make_check(scenario.checks),
                           ok_status=ok_statuses(scenario.checks.status))
