"""Orchestration: one run wired end to end (execute), its result assembled
from the recorder (build, assemble) or rebuilt from its journal (recover),
and the services that watch it live (live metrics, the live report).

The seam for the CLI, the pytest plugin, the distributed master and the
capacity search; everything below it is a plain library."""
