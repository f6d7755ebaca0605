#!/usr/bin/env python3
"""Copy the first rows of the Mooncake conversation trace into workloads/traces/.

    python scripts/make_mooncake_sample.py [--rows 300] [--source ../shared/data/...]

The shipped sample is a verbatim slice of the Mooncake FAST'25 conversation
trace (Apache-2.0), so that `workloads/mooncake-replay.yaml` stands on its
own; its licence and attribution are written beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "mooncake-fast25" / "conversation_trace.jsonl"
OUT = ROOT / "workloads" / "traces" / "mooncake-sample.jsonl"
NOTICE = """\
# mooncake-sample.jsonl

The first {rows} requests (the first {seconds:.0f} seconds) of the Mooncake
FAST'25 conversation trace, copied verbatim by `scripts/make_mooncake_sample.py`:
`timestamp` (milliseconds), `input_length` and `output_length` (tokens) and
`hash_ids` (one id per 512-token block of the prompt; requests that share
leading ids share that prefix).

Source: the Mooncake project (https://github.com/kvcache-ai/Mooncake,
`FAST25-release/traces/conversation_trace.jsonl`), licensed under the Apache
License 2.0 (https://www.apache.org/licenses/LICENSE-2.0). Attribution: Qin,
Li, He, Zhang, Wu, Zheng, Xu, "Mooncake: Trading More Storage for Less
Computation — A KVCache-centric Architecture for Serving LLM Chatbot",
USENIX FAST 2025. No changes were made to the rows.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=300)
    ap.add_argument("--source", type=Path, default=SOURCE)
    args = ap.parse_args()
    lines = args.source.read_text(encoding="utf-8").splitlines()[:args.rows]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seconds = json.loads(lines[-1])["timestamp"] / 1000.0
    OUT.with_suffix(".md").write_text(NOTICE.format(rows=len(lines), seconds=seconds),
                                      encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(lines)} rows, {seconds:.0f} s)")


if __name__ == "__main__":
    main()
