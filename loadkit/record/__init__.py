"""Recording: HDR histograms per series and interval, and the .hlog."""

from loadkit.record.recorder import Interval, Recorder, RequestRecord

__all__ = ["Interval", "Recorder", "RequestRecord"]
