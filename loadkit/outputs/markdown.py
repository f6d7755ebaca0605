"""summary.md: the verdict and SLO table, for CI step summaries and PR comments."""

from __future__ import annotations

from loadkit.outputs.departures import departure_lines
from loadkit.outputs.finish_mix import finish_notes
from loadkit.outputs.format import error_summary, interval, per_second, quantity, samples, seconds
from loadkit.outputs.why import cause_line, split_line
from loadkit.result.model import NOTHING_JUDGED, Distribution, RunResult, Verdict
from loadkit.telemetry.derive import describe

_VERDICT = {Verdict.PASS: "✅ PASS", Verdict.FAIL: "❌ FAIL",
            Verdict.INCONCLUSIVE: "⚠️ INCONCLUSIVE"}


DRIFT_WARNING = 0.05  # real prompt lengths this far from the asked are worth a warning


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(result: RunResult) -> str:
    w = result.workload
    lines = [f"# loadkit: {_cell(w.name)} — {_VERDICT[result.verdict]}", ""]
    if not result.trusted:
        lines += [f"**Untrusted run:** {_cell('; '.join(result.untrusted_reasons))}", ""]
    if a := result.aborted:
        lines += [f"**Aborted at {seconds(a.at_s)}** by `{_cell(a.slo)}`: {_cell(a.reason)}; "
                  "the figures below cover the run until then.", ""]
    if early := result.decided:
        lines += [f"**Ended early at {seconds(early.at_s)}:** {_cell(early.reason)}.", ""]
    planned = f" (of {seconds(w.duration_s)} planned)" if result.cut_short else ""
    lines += [f"Target `{_cell(result.target)}` · {seconds(result.measured_s)} measured{planned} after "
              f"{seconds(w.warmup_s)} warm-up · seed {w.seed}", ""]
    if result.slos:
        lines += ["| SLO | scope | observed | 95% CI | threshold | samples | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for s in result.slos:
            verdict = s.verdict + (" (marginal)" if s.marginal else "")
            lines.append(f"| `{_cell(s.text)}` | {_cell(s.scope)} | "
                         f"{quantity(s.observed, s.unit)} | {interval(s)} | {s.op} "
                         f"{quantity(s.threshold, s.unit)} | {samples(s)} | "
                         f"{verdict}{' — ' + _cell(s.reason) if s.reason else ''} |")
    else:
        lines.append("No SLOs declared.")
    if (why := result.why) is not None and why.causes:
        lines += ["", f"**Why:** {_cell(cause_line(why.causes[0]))}"]
        lines += [f"- also {_cell(cause_line(c))}" for c in why.causes[1:]]
    if (split := split_line(why.decomposition if why else None)) is not None:
        lines += ["", f"Time spent: {split}"]
    c, t = result.counts, result.throughput
    lines += ["", f"{c.completed:,} completed · {c.errors:,} errors · "
              f"{c.dropped:,} dropped · {per_second(t.requests_per_s)} · "
              f"{per_second(t.output_tokens_per_s, 'output tokens/s')} delivered", ""]
    if c.none_answered and result.verdict == Verdict.INCONCLUSIVE:
        lines += [f"**{NOTHING_JUDGED[0].upper()}{NOTHING_JUDGED[1:]}.**", ""]
    if departures := departure_lines(result):
        lines += [f"{_cell(line)}  " for line in departures] + [""]
    if sess := result.sessions:
        cut = f", {sess.cut:,} cut between turns by the run's end" if sess.cut else ""
        lines += [f"{sess.started:,} sessions: {sess.completed:,} completed, {sess.failed:,} "
                  f"ended by a failed turn{cut}", ""]
    if (drift := result.tokens.prompt_drift) is not None and abs(drift) > DRIFT_WARNING:
        lines += [f"**Prompt lengths drift:** the server counted {abs(drift):.1%} "
                  f"{'more' if drift > 0 else 'fewer'} prompt tokens than the workload asked "
                  "for (usage.prompt_tokens): the prompts are not the lengths the SLOs assume",
                  ""]
    if notes := finish_notes(result):
        lines += [*notes, ""]
    if (cache := result.cache) is not None and cache.state != "as expected":
        lines += [f"**Prefix cache {cache.state}:** {_cell(cache.reason)}", ""]
    if (tk := result.tokens).cached_total is not None and tk.prompt_total:
        lines += [f"Prefix cache: {tk.cached_total / tk.prompt_total:.1%} of "
                  f"{tk.prompt_total:,} prompt tokens served from the server's cache", ""]
    if c.errors:
        lines += ["| error | count | example |", "|---|---|---|"]
        for kind, n, example in error_summary(result.errors):
            code = "`" + _cell(example).replace("`", "'") + "`" if example else ""
            lines.append(f"| {kind} | {n:,} | {code} |")
        lines.append("")
    iso = {t: i for t, i in result.isolation.items() if i.ratio is not None}
    if iso:
        lines += ["| tenant | isolation ratio | p99 during others' spikes | p99 quiet |",
                  "|---|---|---|---|"]
        lines += [f"| {_cell(t)} | {i.ratio:.3g} | {quantity(i.p99_spike_ms, 'ms')} | "
                  f"{quantity(i.p99_quiet_ms, 'ms')} |" for t, i in iso.items()]
        lines.append("")
    if result.telemetry:
        lines += [f"Telemetry: {_cell(line)}" for line in describe(result.telemetry)] + [""]
    if d := result.distribution:
        lines += lines_of_workers(d)
    lat = result.summary("latency")
    if lat and lat.count:
        lines += ["| latency | p50 | p90 | p99 | p99.9 | max |", "|---|---|---|---|---|---|",
                  f"| ms | {lat.p50:.4g} | {lat.p90:.4g} | {lat.p99:.4g} | "
                  f"{lat.p99_9:.4g} | {lat.max:.4g} |", ""]
    return "\n".join(lines)


def lines_of_workers(d: Distribution) -> list[str]:
    lines = [f"**{_cell(d.note)}**", ""] if d.note else []
    lines += ["| worker | host | shard | sent | lateness p99 | CPU % | clock offset | status |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {_cell(w.worker)} | {_cell(w.host or '—')} | {w.shard:,} | {w.sent:,} | "
              f"{quantity(w.lateness_p99_ms, 'ms')} | "
              f"{'—' if w.cpu_percent is None else f'{w.cpu_percent:g}'} | "
              f"{w.clock_offset_ms:+.3f} ms | {_cell(w.status)} |" for w in d.workers]
    if d.lost:
        lines.append(f"\n{d.lost:,} slots were never sent: their worker was lost.")
    return [*lines, ""]
