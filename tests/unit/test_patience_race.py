"""A client's patience runs out in the same instant as its first token
arrives: whatever the transport then does, the request is an abandonment,
never an error. (Once in CI, 1 request of 300: the token's handler tried to
disarm a timer that had just fired, and asyncio's RuntimeError was recorded
as a protocol failure.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from types import SimpleNamespace

import pytest

from loadkit.engine.adapter import Leave
from loadkit.engine.answer import Answer
from loadkit.engine.exchange import exchange
from loadkit.engine.http1 import ServerDisconnected
from loadkit.protocols import generation
from loadkit.record.recorder import RequestRecord
from loadkit.workload.models import Client
from loadkit.workload.scenarios import GenerationScenario

TOKEN = b"data: " + json.dumps({"choices": [{"delta": {"content": "tok"}}]}).encode() + b"\n\n"


class LateToken:
    """A transport whose first token is handled just after the patience timer
    fired: the timer is due now, the token is read once it has fired (as a
    library that finishes its read before honouring the cancel would), then
    `then` is raised, or the answer completes."""

    def __init__(self, then: BaseException | None) -> None:
        self.then = then

    async def send(self, tenant: int, scenario: int, body: bytes | None,
                   answer: Answer) -> int:
        assert answer.patience is not None
        loop = asyncio.get_running_loop()
        answer.patience.reschedule(loop.time())  # it fires on the next turn of the loop
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            assert answer.patience.expired()
            answer.status(200, time.monotonic_ns())
            answer.body(TOKEN, time.monotonic_ns())  # must not raise
            if self.then is not None:
                raise self.then from None
            raise
        raise AssertionError("the patience timer did not fire")


def plan() -> SimpleNamespace:
    scenario = GenerationScenario.model_validate(
        {"name": "chat", "kind": "openai-chat", "model": "m", "max_tokens": 8})
    req = generation.prepare(scenario, {}, "seed", None)
    req = dataclasses.replace(req, leave=lambda: Leave(patience_s=10.0))
    return SimpleNamespace(requests=[[req]], client=Client(), secrets=())


@pytest.mark.parametrize("then", [None, ServerDisconnected("cut"), RuntimeError("odd")],
                         ids=["cancelled", "disconnected", "anything"])
def test_a_token_at_the_patience_instant_is_an_abandonment(then: BaseException | None) -> None:
    rec = RequestRecord("t", "chat", "p", 0, time.monotonic_ns())

    async def go() -> None:
        await exchange(plan(), LateToken(then), 0, 0, 8, 8, 0, rec)  # type: ignore[arg-type]

    asyncio.run(go())
    assert (rec.abandoned, rec.error, rec.message) == ("patience", None, "")
