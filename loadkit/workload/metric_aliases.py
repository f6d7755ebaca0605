"""Other load testers' metric names in SLOs, mapped to loadkit's own.

`time_to_first_token p99 < 2s` (AIPerf's name) is `ttft p99 < 2s`: the
objective keeps loadkit's name (its text is rewritten), so the run's outputs
read the same whichever name was written. A name is taken only where the peer
measures the same quantity; where its definition differs (vLLM's `itl` is per
chunk, GuideLLM's time per output token counts the first token's wait, ...)
it is refused with what differs and which loadkit metric to write instead.
docs/metric-vocabulary.md gives each definition and where it was read.

Names are matched without regard to case. Bare names are those of vLLM's
`vllm bench serve`, AIPerf and GuideLLM, which never contradict one another
(a test checks it); loadkit's own names come first, so a bare `itl` is
loadkit's per-token ITL and vLLM's per-chunk one is `vllm.itl`. Any peer's
name can be qualified with it: `aiperf.inter_token_latency`,
`guidellm.request_latency`. inference-perf's names are taken qualified only
(`inference_perf.time_to_first_token`): it spells several like AIPerf and
measures something else by them.

Pure functions raising ValueError, so a workload or SLO file reports them at
the objective's line and key (exit 2).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Prefix -> the tool's name as people know it.
PEERS = {"vllm": "vLLM bench serve", "aiperf": "AIPerf", "guidellm": "GuideLLM",
         "inference_perf": "inference-perf"}
BARE = ("vllm", "aiperf", "guidellm")  # whose names work without their prefix
VOCABULARY_DOC = "docs/metric-vocabulary.md"


@dataclass(frozen=True)
class PeerName:
    """One peer's metric name: the loadkit metric it is, or None (refused)."""

    peer: str  # a key of PEERS
    name: str  # as the peer spells it, lower case
    metric: str | None  # loadkit's metric; None: refused
    note: str  # what differs, if anything; for a refused name, why and what to write


class RefusedMetric(ValueError):
    """A peer's metric name that is not the same quantity as any loadkit metric."""

    def __init__(self, written: str, entry: PeerName) -> None:
        self.written, self.entry = written, entry
        super().__init__(f"{written!r} is {PEERS[entry.peer]}'s {entry.name}, which loadkit "
                         f"does not take as an alias: {entry.note} (see {VOCABULARY_DOC})")


def _v(name: str, metric: str | None, note: str = "") -> PeerName:
    return PeerName("vllm", name, metric, note)


def _a(name: str, metric: str | None, note: str = "") -> PeerName:
    return PeerName("aiperf", name, metric, note)


def _g(name: str, metric: str | None, note: str = "") -> PeerName:
    return PeerName("guidellm", name, metric, note)


def _i(name: str, metric: str | None, note: str = "") -> PeerName:
    return PeerName("inference_perf", name, metric, note)


_PROMPT_TOKENS = ("it counts prompt tokens too (prompt + output tokens per second); loadkit "
                  "judges output tokens only: write output_tokens_per_s")

TABLE: tuple[PeerName, ...] = (
    # vLLM bench serve (vllm/benchmarks/serve.py, lib/endpoint_request_func.py):
    # --percentile-metrics and --goodput keys, and the result's field names.
    _v("ttft", "ttft", "vLLM stops at the first chunk with any `choices`, a role-only one "
                       "included; loadkit at the first token event"),
    _v("tpot", "tpot"),
    _v("itl", "inter_chunk", "vLLM's ITL is every gap between stream chunks: loadkit's "
                             "inter_chunk, not its per-token itl"),
    _v("e2el", "service_time", "from the actual send, so service_time; loadkit's latency "
                               "counts from the intended send time"),
    _v("request_throughput", "throughput"),
    _v("output_throughput", "output_tokens_per_s"),
    _v("request_goodput", "goodput", "a rate: write it in req/s"),
    _v("total_token_throughput", None, _PROMPT_TOKENS),
    # AIPerf (src/aiperf/metrics/types/*.py): the metrics' tags.
    _a("time_to_first_token", "ttft"),
    _a("time_to_first_output_token", "ttfo", "AIPerf counts a tool call's first fragment as "
                                             "output; loadkit's ttfo waits for answer text"),
    _a("request_latency", "service_time", "from the actual send, to the last content chunk"),
    _a("inter_token_latency", "tpot", "AIPerf's ITL is one mean per request, "
                                      "(request_latency - ttft) / (tokens - 1): loadkit's tpot"),
    _a("inter_chunk_latency", "inter_chunk"),
    _a("request_throughput", "throughput"),
    _a("output_token_throughput", "output_tokens_per_s"),
    _a("goodput", "goodput"),
    _a("request_error_rate", "error_rate", "loadkit also counts arrivals its in-flight cap "
                                           "dropped"),
    _a("output_token_throughput_per_user", None,
       "it is 1 / ITL per request, the inverse of loadkit's tpot: "
       "`output_token_throughput_per_user pNN >= X tok/s` is `tpot p(100-NN) <= 1000/X ms` "
       "(e.g. p10 >= 50 tok/s is tpot p90 <= 20ms)"),
    _a("time_to_second_token", None,
       "loadkit does not keep the first gap apart: every gap between events is in "
       "inter_chunk (per token: itl)"),
    _a("stream_setup_latency", None, "loadkit does not time the response headers; the wait "
                                     "for the first token is ttft"),
    _a("stream_prefill_latency", None, "it is ttft less the wait for the response headers, "
                                       "which loadkit does not time: write ttft"),
    # GuideLLM (src/guidellm/schemas/request_stats.py, benchmark/schemas/metrics.py).
    _g("time_to_first_token_ms", "ttft"),
    _g("time_to_first_output_token_ms", "ttfo", "GuideLLM counts a tool call's first fragment "
                                                "as output; loadkit's ttfo waits for answer "
                                                "text"),
    _g("request_latency", "service_time", "from the actual send to the stream's end"),
    _g("inter_token_latency_ms", None,
       "each request's mean gap (last token - first) / (tokens - 1), weighted by its tokens "
       "in the percentiles; loadkit's tpot is the same mean with each request counted once "
       "(equal when every answer has the same length), its itl each token's own gap"),
    _g("time_per_output_token_ms", None,
       "it is (last token - request start) / tokens, the wait for the first token included; "
       "loadkit has no such metric: tpot excludes the first token, service_time is the whole "
       "request"),
    _g("requests_per_second", "throughput", "compare with GuideLLM's mean"),
    _g("output_tokens_per_second", "output_tokens_per_s", "compare with GuideLLM's mean"),
    _g("tokens_per_second", None, _PROMPT_TOKENS),
    # inference-perf (docs/metrics.md, inference_perf/reportgen/base.py): qualified only.
    _i("time_to_first_token", "ttfo", "inference-perf waits for answer text (content), "
                                      "reasoning not counted: loadkit's ttfo"),
    _i("time_per_output_token", "tpot", "(last token - first) / (tokens - 1)"),
    _i("request_latency", "service_time"),
    _i("inter_token_latency", None,
       "every token of a chunk gets the chunk's arrival time (the gap on its first token, 0 "
       "on the rest); loadkit's itl spreads the gap evenly (g/k each): the same only with one "
       "token per chunk, so write itl or, per chunk, inter_chunk"),
    _i("normalized_time_per_output_token", None,
       "it is request latency / tokens, the first token's wait included; loadkit has no such "
       "metric: tpot excludes the first token, service_time is the whole request"),
)

_BY_KEY = {(e.peer, e.name): e for e in TABLE}
_BARE = {e.name: e for e in reversed(TABLE) if e.peer in BARE}  # the first peer's, if several


def peer_name(written: str) -> PeerName | None:
    """The table's entry for a peer's name (`e2el`, `aiperf.request_latency`), or None."""
    low = written.lower()
    peer, dot, rest = low.partition(".")
    if dot and peer in PEERS:
        return _BY_KEY.get((peer, rest))
    return _BARE.get(low)


def resolve_metric(written: str, known: Iterable[str]) -> str:
    """loadkit's metric for a name written in an objective. `known` are
    loadkit's own names (slo_spec.METRICS): they come first. A refused name
    raises RefusedMetric; an unknown one ValueError with the known names and
    the nearest one. `prom.<name>` is passed on as written."""
    if written.startswith("prom."):
        return written
    names = list(known)
    if written in names:
        return written
    if (low := written.lower()) in names:
        return low
    if (entry := peer_name(written)) is not None:
        if entry.metric is None:
            raise RefusedMetric(written, entry)
        return entry.metric
    peer, dot, _ = low.partition(".")
    if dot and peer in PEERS:
        taken = [e.name for e in TABLE if e.peer == peer and e.metric is not None]
        raise ValueError(f"unknown metric {written!r}: of {PEERS[peer]}'s names loadkit "
                         f"takes {', '.join(taken)} (see {VOCABULARY_DOC})")
    candidates = names + list(_BARE) + [f"{e.peer}.{e.name}" for e in TABLE]
    near = difflib.get_close_matches(low, candidates, n=1, cutoff=0.75)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"unknown metric {written!r}; known: {', '.join(names)}{hint}")
