"""The run's result: the typed model of run.json and how it is read.

`loadkit.run.build` assembles a result from a finished run's recorder.
"""

from loadkit.result.files import load_run, parse_run
from loadkit.result.model import (
    ALL,
    SCHEMA_VERSION,
    RunResult,
    Scope,
    SLOResult,
    Summary,
    Verdict,
)

__all__ = ["ALL", "SCHEMA_VERSION", "RunResult", "SLOResult", "Scope", "Summary", "Verdict",
           "load_run", "parse_run"]
