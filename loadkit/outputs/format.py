"""Shared wording of observed values and thresholds for every renderer."""

from __future__ import annotations

from loadkit.result.model import Errors, SLOResult


def quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value / 1000:.4g} s" if value >= 10_000 else f"{value:.4g} ms"
    return f"{value:.4g} {unit}".rstrip()


def interval(slo: SLOResult) -> str:
    """'[401 ms, 423 ms]' for a percentile, '' otherwise."""
    if slo.ci_low is None:
        return ""
    high = quantity(slo.ci_high, slo.unit) if slo.ci_high is not None else "∞"
    return f"[{quantity(slo.ci_low, slo.unit)}, {high}]"


# n_eff under this share of the samples is shown beside them: independent
# samples measure ~0.95-1.0 of themselves, noise not worth a reader's time.
CORRELATED = 0.9


def samples(slo: SLOResult) -> str:
    """'1,234', or '12,000 (n_eff 840)' when the samples were correlated."""
    if slo.n_eff is not None and slo.n_eff < CORRELATED * slo.samples:
        return f"{slo.samples:,} (n_eff {slo.n_eff:,.0f})"
    return f"{slo.samples:,}"


def slo_line(slo: SLOResult) -> str:
    """'observed 412 ms [401 ms, 423 ms] vs threshold < 300 ms (1,234 samples)'."""
    ci = f" 95% CI {interval(slo)}" if interval(slo) else ""
    text = (f"observed {quantity(slo.observed, slo.unit)}{ci} vs threshold "
            f"{slo.op} {quantity(slo.threshold, slo.unit)} ({samples(slo)} samples)")
    if slo.marginal:
        text += "; marginal: the threshold is inside the interval"
    return f"{text}; {slo.reason}" if slo.reason else text


def seconds(value: float) -> str:
    """'4.6 s', '0.05 s', '30 s', '1,800 s': rounded as a person would say it."""
    if value < 1:
        return f"{value:.2g} s"
    if value < 100:
        return f"{round(value, 1):g} s"
    return f"{value:,.0f} s"


def per_second(value: float, unit: str = "req/s") -> str:
    """'41 req/s', '7.5 req/s', '12,000 req/s'."""
    return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.2g} {unit}"


def error_summary(errors: Errors, width: int = 160) -> list[tuple[str, int, str]]:
    """(kind, count, one example) for each error kind seen, most first; the
    example was scrubbed of secrets when recorded, and is cut to `width`."""
    examples = errors.examples
    rows = []
    for kind, n in sorted(errors.by_kind.items(), key=lambda kv: -kv[1]):
        if n:
            example = " ".join((examples.get(kind) or [""])[0].split())
            rows.append((kind, n, example if len(example) <= width
                         else example[:width - 1] + "…"))
    return rows


def error_line(errors: Errors) -> str:
    """'http_4xx 433 (e.g. HTTP 401: Invalid API key); timeout 2 (...)'."""
    return "; ".join(f"{kind} {n:,}" + (f" (e.g. {ex})" if ex else "")
                     for kind, n, ex in error_summary(errors, 120))
