"""Scraping Prometheus ``/metrics`` endpoints during a run (httpx + prometheus_client).

Any exporter: dcgm-exporter (``DCGM_FI_DEV_GPU_UTIL``, ...), vLLM
(``vllm:num_requests_waiting``, ...), TGI, Triton, the embedded simulator.
The text is parsed with ``prometheus_client.parser``, never by hand.

Series keys are the metric name plus its identifying labels
(``DCGM_FI_DEV_GPU_UTIL{gpu="0"}``); labels that only describe (model,
host, UUID, engine, ...) are dropped and samples that then share a key are
summed (requests across models add up). Gauges are kept as they are;
counters are kept raw and as a rate (``<name>_total.rate``, per second,
resets handled); histograms become per-scrape p50/p90/p99 and mean
(``<name>.p99``) from the bucket deltas between two scrapes, interpolated
within a bucket as PromQL's histogram_quantile does, and the count and sum
of the observations the scrape added (``<name>.count``, ``<name>.sum``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import importlib
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from loadkit.engine.bounded import get_bounded
from loadkit.errors import AnswerTooLarge
from loadkit.telemetry.store import Source
from loadkit.urls import without_credentials

# What is kept when a target names no `metrics`: what helps read a load test.
KNOWN = (
    # dcgm-exporter
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_PCIE_*", "DCGM_FI_PROF_*",
    # vLLM
    "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:gpu_cache_usage_perc",
    "vllm:kv_cache_usage_perc", "vllm:prompt_tokens", "vllm:generation_tokens",
    "vllm:request_success", "vllm:num_preemptions", "vllm:time_to_first_token_seconds",
    "vllm:e2e_request_latency_seconds", "vllm:time_per_output_token_seconds",
    "vllm:inter_token_latency_seconds", "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds", "vllm:request_decode_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:prefix_cache_queries", "vllm:prefix_cache_hits",
    # SGLang
    "sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage",
    "sglang:queue_time_seconds", "sglang:e2e_request_latency_seconds",
    "sglang:time_to_first_token_seconds", "sglang:num_aborted_requests",
    # TGI
    "tgi_queue_size", "tgi_batch_current_size", "tgi_batch_current_max_tokens",
    "tgi_request_count", "tgi_request_success", "tgi_request_duration",
    "tgi_request_generated_tokens",
    "tgi_request_queue_duration", "tgi_batch_inference_duration",
    # Triton
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_pending_request_count",
    "nv_inference_queue_duration_us", "nv_inference_compute_infer_duration_us",
    "nv_gpu_utilization", "nv_gpu_power_usage", "nv_gpu_memory_used_bytes",
    "nv_energy_consumption",
    # the embedded simulator
    "loadkit_sim_gpu_*", "loadkit_sim_requests_running", "loadkit_sim_replicas",
    "loadkit_sim_model_load*", "loadkit_sim_disconnects*", "loadkit_sim_tokens_after_*",
)
# Labels that describe rather than identify a series: dropped, samples summed.
DESCRIPTIVE = frozenset({
    "model_name", "model", "version", "engine", "UUID", "uuid",
    "Hostname", "hostname", "modelName", "device", "pci_bus_id", "DCGM_FI_DRIVER_VERSION",
    "instance", "job", "namespace", "pod", "container", "err_hostname",
})
QUANTILES = (50, 90, 99)


def selector(patterns: list[str] | None) -> Callable[[str, str], bool]:
    """A predicate on a metric family (name, type) from names or globs."""
    pats = list(KNOWN if patterns is None else patterns)

    def wanted(name: str, kind: str) -> bool:
        names = (name, name + "_total") if kind == "counter" else (name,)
        return any(fnmatch.fnmatchcase(n, p) for n in names for p in pats)
    return wanted


def unit_of(name: str) -> str:
    n = name.lower()
    for suffix, unit in (("_seconds", "s"), ("_us", "us"), ("_bytes", "B"), ("_watts", "W"),
                         ("_perc", "ratio"), ("_ratio", "ratio"), ("power_usage", "W"),
                         ("_util", "%"), ("_temp", "C"), ("_clock", "MHz"),
                         ("fb_used", "MiB"), ("fb_free", "MiB")):
        if n.endswith(suffix):
            return unit
    return ""


def _families(text: str) -> Iterable[Any]:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
    from prometheus_client.parser import text_string_to_metric_families as prom

    if text.rstrip().endswith("# EOF"):
        with contextlib.suppress(ValueError):  # strict: a page it refuses is read as Prometheus
            return list(om(text))
    return prom(text)


class Parsed:
    """One scrape reduced to keyed values: gauges, counters, histograms."""

    def __init__(self) -> None:
        self.gauges: dict[str, tuple[str, dict, float]] = {}
        self.counters: dict[str, tuple[str, dict, float]] = {}
        # key -> (family, labels, {le: cumulative}, sum, count)
        self.histograms: dict[str, tuple[str, dict, dict[float, float], float, float]] = {}


def parse(text: str, wanted: Callable[[str, str], bool]) -> Parsed:
    """Parse exposition text (prometheus_client's parsers) into summed keyed
    values. OpenMetrics, which a server may send whatever it was asked, ends
    with `# EOF` and gets its own parser (the Prometheus one read its
    counters' `_created` samples as gauges and lost the counters)."""
    out = Parsed()
    for fam in _families(text):
        if not wanted(fam.name, fam.type):
            continue
        for s in fam.samples:
            labels = {k: v for k, v in s.labels.items()
                      if k not in DESCRIPTIVE and k not in ("le", "quantile")}
            if fam.type == "histogram":
                key = _key(fam.name, labels)
                _fam, _l, buckets, total, count = out.histograms.get(key, (fam.name, labels, {},
                                                                           0.0, 0.0))
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + s.value
                elif s.name.endswith("_sum"):
                    total += s.value
                elif s.name.endswith("_count"):
                    count += s.value
                out.histograms[key] = (fam.name, labels, buckets, total, count)
            elif fam.type == "counter":
                if s.name.endswith("_total"):
                    _add(out.counters, s.name, labels, s.value)
            elif fam.type in ("gauge", "unknown", "untyped"):
                _add(out.gauges, s.name, labels, s.value)
            elif fam.type == "summary" and "quantile" in s.labels:
                _add(out.gauges, s.name, {**labels, "quantile": s.labels["quantile"]}, s.value)
    return out


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """histogram_quantile over (upper bound, count in bucket) pairs, sorted."""
    total = sum(n for _le, n in buckets)
    if total <= 0:
        return None
    rank, seen, lower = q * total, 0.0, 0.0
    for le, n in buckets:
        if n > 0 and seen + n >= rank:
            if le == float("inf"):
                return lower  # the highest finite bound, as PromQL answers
            return lower + (le - lower) * (rank - seen) / n
        seen += n
        if le != float("inf"):
            lower = le
    return lower


class PrometheusSource(Source):
    """Scrape one /metrics URL every interval into series (see the module doc)."""

    kind = "prometheus"

    def __init__(self, url: str, metrics: list[str] | None, prefix: str, interval: float,
                 timeout: float = 2.0) -> None:
        super().__init__(without_credentials(url), interval)
        self.url = url
        self.prefix = prefix
        self.wanted = selector(metrics)
        self.timeout = min(timeout, max(interval * 2, 0.5))
        self.client: httpx.Client | None = None
        self._counters: dict[str, tuple[float, float]] = {}  # key -> (t_s, value)
        self._hists: dict[str, tuple[dict[float, float], float, float]] = {}

    def open(self) -> bool:
        for parser in ("prometheus_client.parser", "prometheus_client.openmetrics.parser"):
            importlib.import_module(parser)  # now, not on the poller mid-run
        self.client = httpx.Client(timeout=self.timeout, follow_redirects=False,
                                   headers={"Accept": "text/plain"})
        return True

    def close(self) -> None:
        if self.client is not None:
            self.client.close()

    def poll(self) -> None:
        assert self.client is not None
        t0 = time.monotonic_ns()
        try:
            body, charset = get_bounded(self.client, self.url, within_s=self.timeout)
            text = body.decode(charset, errors="replace")
        except httpx.HTTPStatusError as exc:
            self.failed(f"{self.target} answered HTTP {exc.response.status_code}")
            return
        except AnswerTooLarge as exc:
            self.failed(f"{self.target} {exc}: not a metrics page")
            return
        except LookupError:  # a charset Python does not know
            self.failed(f"{self.target}: not Prometheus text: unknown charset")
            return
        except httpx.HTTPError as exc:
            self.failed(f"cannot scrape {self.target}: {type(exc).__name__}: {exc}")
            return
        t_ns = (t0 + time.monotonic_ns()) // 2
        try:
            parsed = parse(text, self.wanted)
        except Exception as exc:  # noqa: BLE001 - the parser raises ValueError and others
            self.failed(f"{self.target}: not Prometheus text: {type(exc).__name__}: {exc}")
            return
        self.ingest(parsed, t_ns)
        self.samples += 1

    def ingest(self, parsed: Parsed, t_ns: int) -> None:
        add, p = self.store.add, self.prefix
        t_s = t_ns / 1e9
        for key, (name, labels, value) in parsed.gauges.items():
            add(p + key, value, t_ns, metric=p + name, unit=unit_of(name), labels=labels,
                source=self.kind)
        for key, (name, labels, value) in parsed.counters.items():
            if not math.isfinite(value):  # no reading: the next finite one is no reset
                continue
            add(p + key, value, t_ns, metric=p + name, unit=unit_of(name.removesuffix("_total")),
                kind="counter", labels=labels, source=self.kind)
            last = self._counters.get(key)
            self._counters[key] = (t_s, value)
            if last and t_s > last[0]:
                delta = value - last[1] if value >= last[1] else value  # a reset restarts at 0
                add(p + _key(name + ".rate", labels), delta / (t_s - last[0]), t_ns,
                    metric=p + name + ".rate", unit="/s", kind="rate", labels=labels,
                    source=self.kind)
        for key, (fam, labels, buckets, total, count) in parsed.histograms.items():
            before = self._hists.get(key)
            self._hists[key] = (buckets, total, count)
            if not before:
                continue
            lb, ltotal, lcount = before
            if count < lcount or any(buckets.get(le, 0) < n for le, n in lb.items()):
                lb, ltotal, lcount = {}, 0.0, 0.0  # restarted: everything is new
            dcount = count - lcount
            if dcount <= 0:
                continue
            per_bucket, prev = [], 0.0
            for le in sorted(buckets):
                cum = buckets[le] - lb.get(le, 0.0)
                per_bucket.append((le, max(cum - prev, 0.0)))
                prev = cum
            unit = unit_of(fam)
            for q in QUANTILES:
                v = quantile(per_bucket, q / 100)
                if v is not None:
                    add(p + _key(f"{fam}.p{q}", labels), v, t_ns, metric=f"{p}{fam}.p{q}",
                        unit=unit, kind="quantile", labels=labels, source=self.kind)
            add(p + _key(f"{fam}.mean", labels), (total - ltotal) / dcount, t_ns,
                metric=f"{p}{fam}.mean", unit=unit, kind="quantile", labels=labels,
                source=self.kind)
            # What the mean is of: sums and counts add up over scrapes (and
            # over a long run's merged points), so a window's mean is theirs.
            add(p + _key(f"{fam}.count", labels), dcount, t_ns, metric=f"{p}{fam}.count",
                unit="", kind="count", labels=labels, source=self.kind)
            add(p + _key(f"{fam}.sum", labels), total - ltotal, t_ns, metric=f"{p}{fam}.sum",
                unit=unit, kind="count", labels=labels, source=self.kind)


def _add(into: dict, name: str, labels: dict, value: float) -> None:
    key = _key(name, labels)
    old = into.get(key)
    into[key] = (name, labels, value + (old[2] if old else 0.0))


def _key(name: str, labels: dict[str, str]) -> str:
    if not labels:
        return name
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
