"""What the inference handlers (``generate.py``, ``embeddings.py``) need from
the running server, handed to them as one object so they never import the
server module (which imports them)."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import media
from . import vocab as wire
from .answer import Draws
from .config import SimConfig
from .disconnects import LOG_SIZE, Disconnect
from .injector import Injector
from .media import LOG_SIZE as MEDIA_LOG_SIZE
from .media import MediaRecord
from .metrics import Metrics
from .prefix_cache import PrefixCache
from .responses_wire import ResponseStore
from .serving import Deployment
from .timeline import Timeline


@dataclass(frozen=True, slots=True)
class SimContext:
    """The serving state of one server run; built when it starts serving."""

    config: SimConfig
    loop: asyncio.AbstractEventLoop
    origin: float  # loop time at which serving started: fault schedules count from it
    deployment: Deployment
    metrics: Metrics
    injector: Injector
    timeline: Timeline
    vocab: wire.Vocabulary
    wrong_vocab: wire.Vocabulary  # what a wrong "version B" says
    ids: random.Random  # response ids
    # The timing knobs in seconds, the loop clock's unit.
    ttft_s: float
    prefill_s_per_token: float
    itl_s: float
    itl_s_per_seq: float
    draws: Draws  # per-request choices: reasoning lengths, tool calls, invalid documents
    responses: ResponseStore  # Responses API: ids -> tokens, for previous_response_id
    prefix_caches: list[PrefixCache] | None = None  # one per replica; None: off
    # Clients that hung up, the last LOG_SIZE, oldest first (disconnects.py).
    disconnects: deque[Disconnect] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    # What the requests with images or audio carried, the last LOG_SIZE (media.py).
    media: deque[MediaRecord] = field(default_factory=lambda: deque(maxlen=MEDIA_LOG_SIZE))
    # Generations running as tasks of their own (ignore_disconnect), to cancel at stop.
    detached: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def start(cls, config: SimConfig, loop: asyncio.AbstractEventLoop,
              deployment: Deployment, metrics: Metrics) -> SimContext:
        """The context of a server that starts serving now, on ``loop``."""
        vocab = wire.Vocabulary(config.seed)
        wrong = wire.Vocabulary(config.seed, wire.WRONG_WORDS)
        media.warm()  # the image decoders, loaded before the clock starts
        now = loop.time()  # after the vocabularies: their set-up is not serving time
        return cls(config, loop, now, deployment, metrics,
                   Injector(config.faults, config.seed, now), Timeline(config.faults, now),
                   vocab, wrong, random.Random(config.seed),
                   config.ttft_ms / 1000.0, config.prefill_ms_per_token / 1000.0,
                   config.itl_ms / 1000.0, config.itl_ms_per_seq / 1000.0,
                   Draws(config), ResponseStore(),
                   [PrefixCache(config.block_tokens, config.prefix_cache_blocks)
                    for _ in range(config.replicas)] if config.prefix_cache_blocks else None)


async def sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    # Still yields when the deadline has passed (delay <= 0), so a zero-delay
    # config cannot starve other streams.
    await asyncio.sleep(deadline - loop.time())
