"""``/metrics``: the Prometheus text format (version 0.0.4), hand-written.

Names follow vLLM's (``vllm:num_requests_running``, ...) so dashboards and
scrapers built for vLLM read the simulator unchanged.  The simulated GPU
gauges are prefixed ``loadkit_sim_gpu_`` so nobody mistakes them for
hardware readings: they are computed from the serving model (utilisation is
the busy fraction of a replica averaged over ~1 s; power and memory follow
from it for an 80 GB, 700 W part, like an H100 SXM).

Per-request histograms (seconds, label ``model_name``), vLLM's names and
meaning, each from the same four instants of one request on the loop clock:
*arrival* (its handler starts, after any ``overhead`` fault), *admitted* (a
batch seat, KV-cache and a loaded model), *first token* and *last token*
(the simulated GPU's deadlines for them, not when the event loop got round
to writing them)::

    vllm:time_to_first_token_seconds     arrival -> first token (= queue + prefill)
    vllm:e2e_request_latency_seconds     arrival -> last token  (= queue + prefill + decode)
    vllm:request_queue_time_seconds      arrival -> admitted: waiting for a seat,
                                         KV-cache or a model load (vLLM never sees a
                                         load; the simulator counts that wait here)
    vllm:request_prefill_time_seconds    admitted -> first token
    vllm:request_decode_time_seconds     first token -> last token
    vllm:request_inference_time_seconds  admitted -> last token (= prefill + decode)

Every answered request (chat, completions, Responses, Messages, streamed or
not, and embeddings, whose answer is its "first token": decode 0) is
observed in all but TTFT once, when it is answered; TTFT is observed at the
first token, also for answers cut later.  The phases are kept in integer
nanoseconds, so for every request, and for the ``_sum`` and ``_count`` of
each family, queue + prefill + decode == e2e and prefill + decode ==
inference hold exactly on the server (a client adding the rendered sums up
gets them to a double's last bit).  An instant earlier than the one before
it (a request seated at the deadline its predecessor freed the seat, which
the loop noticed only after this one arrived) is taken as that one: no phase
is negative.

Model loads: ``loadkit_sim_model_loads_total`` (counter) counts every load
of the model by a replica that takes time (``load_ms`` > 0): at start-up, on
a wake from scale-to-zero, on revival after a ``replica_death``;
``loadkit_sim_model_loading`` (gauge) is the replicas loading now.
``loadkit_sim_faults_injected_total{kind}`` counts faults applied, ``overhead``
included (those requests' delay is in no histogram here; ``ignore_disconnect``
once per request that kept generating after its client left).

Clients that leave (``disconnects.py``): ``loadkit_sim_disconnects_total``
(counter) counts the hang-ups of inference requests the server noticed, and
``loadkit_sim_tokens_after_disconnect_total`` (counter) the tokens generated
after them: 0 for a request that stops when its client leaves (the default),
all the rest of its tokens for one that ignores it (``ignore_disconnect``),
added when it ends.  ``vllm:generation_tokens_total`` counts the tokens sent,
and all of such a zombie's, as if sent; a zombie that runs to its last token
is answered in full (``vllm:request_success_total``, every histogram).  The prefix cache
counters (``vllm:prefix_cache_queries_total``, ``vllm:prefix_cache_hits_total``)
keep counting across a cache reset (``/reset_prefix_cache``, ``/flush_cache``).

Media and rerank (``media.py``, ``rerank.py``): ``loadkit_sim_images_total``,
``loadkit_sim_image_tokens_total``, ``loadkit_sim_audio_seconds_total`` and
``loadkit_sim_audio_tokens_total`` count the images and audio of parsed
requests (their tokens are in ``vllm:prompt_tokens_total`` too, once
prefilled); ``loadkit_sim_scored_documents_total`` the documents (pairs)
of answered rerank and score requests.

Writing the format by hand keeps the simulator free of dependencies beyond
aiohttp; it is small: counters, gauges and cumulative histograms.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping

from .serving import COLD, DEAD, LOADING, READY, Deployment

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Histogram buckets in seconds, after vLLM's (its TTFT one, and the request
# latency one of its end-to-end, queue, prefill, decode and inference times).
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
                1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
               50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)

_GPU_MEMORY_BYTES = 80 * 10**9
_GPU_MEMORY_USED = 0.9  # vLLM reserves this share at load (gpu_memory_utilization)
_GPU_IDLE_W, _GPU_MAX_W = 70.0, 700.0


def ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds, what the histograms add up."""
    return round(seconds * 1e9)


class Histogram:
    """A cumulative Prometheus histogram (counts kept per bucket); values and
    their sum in integer nanoseconds, so sums of phases add up exactly."""

    __slots__ = ("_bounds_ns", "bounds", "count", "counts", "total_ns")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self._bounds_ns = tuple(ns(b) for b in self.bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.total_ns = 0
        self.count = 0

    @property
    def total(self) -> float:
        """The sum of the values, in seconds."""
        return self.total_ns / 1e9

    def observe(self, value: float) -> None:
        """Observe ``value`` seconds."""
        self.observe_ns(ns(value))

    def observe_ns(self, value: int) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le).
        self.counts[bisect.bisect_left(self._bounds_ns, value)] += 1
        self.total_ns += value
        self.count += 1


class Metrics:
    """Counters and histograms the request handlers update."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests_total = 0  # inference requests admitted
        self.prompt_tokens = 0
        self.prefix_queries = 0  # prompt tokens looked up in the prefix cache
        self.prefix_hits = 0  # of those, found there
        self.generation_tokens = 0
        self.finished = 0  # answered in full
        self.disconnects = 0  # clients that hung up on an inference request
        self.tokens_after_disconnect = 0  # tokens generated after a hang-up
        self.aborted = 0  # hang-ups honoured: generation stopped, seat and cache freed
        self.images = 0  # images in prompts (media.py)
        self.image_tokens = 0
        self.audio_seconds = 0.0
        self.audio_tokens = 0
        self.scored_documents = 0  # rerank and score pairs answered (rerank.py)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.e2e = Histogram(E2E_BUCKETS)
        self.queue = Histogram(E2E_BUCKETS)
        self.prefill = Histogram(E2E_BUCKETS)
        self.decode = Histogram(E2E_BUCKETS)
        self.inference = Histogram(E2E_BUCKETS)

    def answered(self, queue_ns: int, prefill_ns: int, decode_ns: int) -> None:
        """One request answered in full, its phases in nanoseconds (see the
        module's docstring): the end-to-end time is their sum."""
        self.finished += 1
        self.queue.observe_ns(queue_ns)
        self.prefill.observe_ns(prefill_ns)
        self.decode.observe_ns(decode_ns)
        self.inference.observe_ns(prefill_ns + decode_ns)
        self.e2e.observe_ns(queue_ns + prefill_ns + decode_ns)

    def render(self, dep: Deployment, now: float, injected: Mapping[str, int]) -> bytes:
        model = {"model_name": self.model}
        w = _Writer()
        # The original simulator's two series, kept for compatibility.
        w.metric("loadkit_sim_requests_total", "counter",
                 "Inference requests accepted.", [({}, self.requests_total)])
        w.metric("loadkit_sim_requests_running", "gauge",
                 "Inference requests in flight (running or waiting).",
                 [({}, dep.in_system)])
        w.metric("vllm:num_requests_running", "gauge",
                 "Requests in a batch (prefill or decode) on a replica.",
                 [(model, dep.running)])
        w.metric("vllm:num_requests_waiting", "gauge",
                 "Requests queued for a batch seat, KV-cache or a model load.",
                 [(model, dep.waiting)])
        w.metric("vllm:gpu_cache_usage_perc", "gauge",
                 "Fraction of KV-cache reserved, 0 to 1 (0 when unlimited).",
                 [(model, dep.kv_usage())])
        w.metric("vllm:prompt_tokens_total", "counter", "Prefilled prompt tokens.",
                 [(model, self.prompt_tokens)])
        w.metric("vllm:prefix_cache_queries_total", "counter",
                 "Prompt tokens looked up in the prefix cache.", [(model, self.prefix_queries)])
        w.metric("vllm:prefix_cache_hits_total", "counter",
                 "Prompt tokens found in the prefix cache.", [(model, self.prefix_hits)])
        w.metric("vllm:generation_tokens_total", "counter", "Generated tokens.",
                 [(model, self.generation_tokens)])
        w.metric("vllm:request_success_total", "counter",
                 "Requests finished: answered in full (length), or aborted when "
                 "their client left (abort).",
                 [({**model, "finished_reason": "length"}, self.finished),
                  ({**model, "finished_reason": "abort"}, self.aborted)])
        w.histogram("vllm:time_to_first_token_seconds",
                    "Time from arrival to the first token (queue + prefill).", model, self.ttft)
        w.histogram("vllm:e2e_request_latency_seconds",
                    "Time from arrival to the last token, answered requests "
                    "(queue + prefill + decode).", model, self.e2e)
        w.histogram("vllm:request_queue_time_seconds",
                    "Time from arrival to a batch seat: waiting for a seat, KV-cache "
                    "or a model load.", model, self.queue)
        w.histogram("vllm:request_prefill_time_seconds",
                    "Time from a batch seat to the first token.", model, self.prefill)
        w.histogram("vllm:request_decode_time_seconds",
                    "Time from the first token to the last.", model, self.decode)
        w.histogram("vllm:request_inference_time_seconds",
                    "Time from a batch seat to the last token (prefill + decode).",
                    model, self.inference)
        states = dep.states(now)
        w.metric("loadkit_sim_replicas", "gauge", "Replicas by state.",
                 [({"state": s}, states.count(s)) for s in (READY, COLD, LOADING, DEAD)])
        w.metric("loadkit_sim_model_loads_total", "counter",
                 "Model loads by a replica (start-up, wake from scale-to-zero, revival).",
                 [({}, dep.loads)])
        w.metric("loadkit_sim_model_loading", "gauge", "Replicas loading the model now.",
                 [({}, sum(r.state == LOADING for r in dep.replicas))])
        w.metric("loadkit_sim_disconnects_total", "counter",
                 "Inference requests whose client hung up before its answer was complete.",
                 [({}, self.disconnects)])
        w.metric("loadkit_sim_tokens_after_disconnect_total", "counter",
                 "Tokens generated after the client hung up (ignore_disconnect).",
                 [({}, self.tokens_after_disconnect)])
        w.metric("loadkit_sim_images_total", "counter", "Images in prompts (media.py).",
                 [({}, self.images)])
        w.metric("loadkit_sim_image_tokens_total", "counter",
                 "Prompt tokens of those images.", [({}, self.image_tokens)])
        w.metric("loadkit_sim_audio_seconds_total", "counter",
                 "Seconds of audio in prompts.", [({}, self.audio_seconds)])
        w.metric("loadkit_sim_audio_tokens_total", "counter",
                 "Prompt tokens of that audio.", [({}, self.audio_tokens)])
        w.metric("loadkit_sim_scored_documents_total", "counter",
                 "Documents scored by rerank and score requests answered (rerank.py).",
                 [({}, self.scored_documents)])
        w.metric("loadkit_sim_faults_injected_total", "counter",
                 "Faults applied to requests, by kind.",
                 [({"kind": k}, n) for k, n in sorted(injected.items())])
        util = [(r, r.utilization(now) if r.state != DEAD else 0.0) for r in dep.replicas]
        w.metric("loadkit_sim_gpu_utilization_ratio", "gauge",
                 "SIMULATED GPU busy fraction of a replica (not a hardware reading).",
                 [({"replica": str(r.index)}, u) for r, u in util])
        w.metric("loadkit_sim_gpu_power_watts", "gauge",
                 "SIMULATED GPU power of a replica (not a hardware reading).",
                 [({"replica": str(r.index)},
                   0.0 if r.state == DEAD else _GPU_IDLE_W + (_GPU_MAX_W - _GPU_IDLE_W) * u)
                  for r, u in util])
        w.metric("loadkit_sim_gpu_memory_used_bytes", "gauge",
                 "SIMULATED GPU memory in use: the model and KV-cache once loaded.",
                 [({"replica": str(r.index)},
                   int(_GPU_MEMORY_BYTES * _GPU_MEMORY_USED) if s == READY else 0)
                  for r, s in zip(dep.replicas, states)])
        w.metric("loadkit_sim_gpu_memory_total_bytes", "gauge",
                 "SIMULATED GPU memory size of a replica.",
                 [({"replica": str(r.index)}, _GPU_MEMORY_BYTES) for r in dep.replicas])
        return w.text().encode()


class _Writer:
    def __init__(self) -> None:
        self._lines: list[str] = []

    def metric(self, name: str, kind: str, help: str,
               samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        self._lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
        self._lines += [f"{name}{_labels(labels)} {_number(v)}" for labels, v in samples]

    def histogram(self, name: str, help: str, labels: Mapping[str, str],
                  h: Histogram) -> None:
        self._lines += [f"# HELP {name} {help}", f"# TYPE {name} histogram"]
        cumulative = 0
        for le, n in zip([*(_number(b) for b in h.bounds), "+Inf"], h.counts):
            cumulative += n
            self._lines.append(f"{name}_bucket{_labels({**labels, 'le': le})} {cumulative}")
        self._lines.append(f"{name}_sum{_labels(labels)} {_number(h.total)}")
        self._lines.append(f"{name}_count{_labels(labels)} {h.count}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _escape(value: str) -> str:
    # The exposition format escapes exactly these three in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(v: float) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))
