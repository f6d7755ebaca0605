"""loadkit: load testing and SLO verification for GPU inference endpoints."""

__version__ = "0.1.0"
