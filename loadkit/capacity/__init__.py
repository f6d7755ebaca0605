"""`loadkit capacity`: the highest load a deployment carries within its SLOs.

    find_capacity(Request(...)) -> CapacityResult     probes, searches, judges
    write_all(result, out_dir)                        capacity.json/.md/.html, JUnit
    regate(result, expect, production)                judge a result again (pure)
    compare_capacity(base, cand, max_loss)            a release that lost capacity (pure)

Modules: `search` (the search, pure), `scale` (a workload at a load, pure),
`probe` (one probe: one execute() run in its own folder), `runner` (a whole
search), `gate` (--expect, headroom, exit code), `compare`, `model`
(capacity.json's typed model), `report` and `html` (the renderers), `outputs`
(the files).
"""

from loadkit.capacity.compare import CapacityComparison, compare_capacity, load_capacity
from loadkit.capacity.gate import exit_code, regate
from loadkit.capacity.model import CapacityResult
from loadkit.capacity.outputs import write_all
from loadkit.capacity.probe import ProbeSetup
from loadkit.capacity.runner import Request, find_capacity

__all__ = ["CapacityComparison", "CapacityResult", "ProbeSetup", "Request", "compare_capacity",
           "exit_code", "find_capacity", "load_capacity", "regate", "write_all"]
