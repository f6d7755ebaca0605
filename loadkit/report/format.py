"""Shared wording of observed values and thresholds for every renderer."""

from __future__ import annotations


def quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value / 1000:.4g} s" if value >= 10_000 else f"{value:.4g} ms"
    return f"{value:.4g} {unit}".rstrip()


def interval(slo: dict) -> str:
    """'[401 ms, 423 ms]' for a percentile, '' otherwise."""
    if slo.get("ci_low") is None:
        return ""
    high = quantity(slo["ci_high"], slo["unit"]) if slo["ci_high"] is not None else "∞"
    return f"[{quantity(slo['ci_low'], slo['unit'])}, {high}]"


def slo_line(slo: dict) -> str:
    """'observed 412 ms [401 ms, 423 ms] vs threshold < 300 ms (1,234 samples)'."""
    ci = f" 95% CI {interval(slo)}" if interval(slo) else ""
    text = (f"observed {quantity(slo['observed'], slo['unit'])}{ci} vs threshold "
            f"{slo['op']} {quantity(slo['threshold'], slo['unit'])} ({slo['samples']:,} samples)")
    if slo.get("marginal"):
        text += "; marginal: the threshold is inside the interval"
    return f"{text}; {slo['reason']}" if slo.get("reason") else text
