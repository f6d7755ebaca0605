"""SLO verdicts, noisy-neighbour isolation: pure functions over measurements."""
