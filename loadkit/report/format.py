"""Shared wording of observed values and thresholds for every renderer."""

from __future__ import annotations


def quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "%":
        return f"{value * 100:.3g}%"
    if unit == "ms":
        return f"{value / 1000:.4g} s" if value >= 10_000 else f"{value:.4g} ms"
    return f"{value:.4g} {unit}"


def slo_line(slo: dict) -> str:
    """'observed 412 ms vs threshold < 300 ms (1,234 samples)'."""
    text = (f"observed {quantity(slo['observed'], slo['unit'])} vs threshold "
            f"{slo['op']} {quantity(slo['threshold'], slo['unit'])} ({slo['samples']:,} samples)")
    return f"{text}; {slo['reason']}" if slo.get("reason") else text
