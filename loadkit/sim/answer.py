"""What each response says, decided per request: how long it reasons, and
whether it answers in words, with a tool call, or with a structured-output
document (valid or not).

Every draw is a Bernoulli (or, for reasoning lengths, lognormal) from its own
generator seeded by the config seed, so a run is reproducible: the n-th
request that meets a draw gets the n-th value of that draw's generator.
"""

from __future__ import annotations

import math
import random

from .config import SimConfig
from .dialect import DOCUMENT, TOOL_CALL, WORDS, Answer, GenRequest
from .tools import CUT, MISSING, document, encoded, spread
from .vocab import Vocabulary


class Draws:
    """The per-request random choices of one server run."""

    def __init__(self, config: SimConfig) -> None:
        seed = config.seed
        self._config = config
        self._reasoning = random.Random(f"{seed}:reasoning")
        self._tools = random.Random(f"{seed}:tool_calls")
        self._malformed = random.Random(f"{seed}:malformed_tools")
        self._invalid = random.Random(f"{seed}:invalid_json")
        self._invalid_docs = 0  # invalid documents so far: they alternate CUT and MISSING

    def reasoning(self, budget: int) -> int:
        """Reasoning tokens of a response allowed ``budget`` tokens in all."""
        median, sigma = self._config.reasoning_tokens, self._config.reasoning_sigma
        if not median:
            return 0
        if sigma > 0:
            median = round(median * math.exp(self._reasoning.gauss(0.0, sigma)))
        return min(median, budget)

    def kind(self, req: GenRequest) -> str:
        """How the response answers (after its reasoning)."""
        if req.output_tokens < 1:  # the reasoning took every token
            return WORDS
        callable_ = req.tool is not None and req.tool_choice != "none" \
            and not req.tool_result_last
        if callable_ and (req.tool_choice == "required"
                          or self._tools.random() < self._config.tool_call_share):
            return TOOL_CALL
        return DOCUMENT if req.schema is not None else WORDS

    def malformed_call(self) -> bool:
        return self._malformed.random() < self._config.malformed_tool_share

    def invalid_document(self) -> str | None:
        if self._invalid.random() >= self._config.invalid_json_share:
            return None
        self._invalid_docs += 1
        return CUT if self._invalid_docs % 2 else MISSING


def plan(req: GenRequest, kind: str, vocab: Vocabulary, draws: Draws) -> Answer:
    """The answer of ``req``: words, or a tool call or document cut into exactly
    its answer tokens."""
    if kind == WORDS:
        return Answer(WORDS, vocab, req.reasoning_tokens, req.generated)
    if kind == TOOL_CALL:
        assert req.tool is not None
        schema, name = req.tool.parameters, req.tool.name
        invalid = CUT if draws.malformed_call() else None
    else:
        assert req.schema is not None
        schema, name = req.schema, ""
        invalid = draws.invalid_document()
    fragments = spread(document(schema, vocab.words, invalid), req.output_tokens)
    return Answer(kind, vocab, req.reasoning_tokens, req.generated, encoded(fragments),
                  "".join(fragments), name, invalid is None)
