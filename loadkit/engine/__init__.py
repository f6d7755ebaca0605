"""The open-loop engine and its load-path HTTP client."""

from loadkit.engine.runner import Engine, Plan, Progress

__all__ = ["Engine", "Plan", "Progress"]
