"""SLO verdicts, noisy-neighbour isolation: pure functions over measurements."""

from loadkit.slo.evaluate import Counts, evaluate, evaluate_all
from loadkit.slo.live import LiveJudge
from loadkit.slo.scopes import Phases

__all__ = ["Counts", "LiveJudge", "Phases", "evaluate", "evaluate_all"]
