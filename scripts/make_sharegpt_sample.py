#!/usr/bin/env python3
"""Write workloads/data/sharegpt-sample.json: synthetic conversations in ShareGPT format.

    python scripts/make_sharegpt_sample.py [--conversations 40] [--seed 1]

Not real chats: seeded word sequences with the shape of ShareGPT dumps (an
optional system message, 1-4 human turns each answered by gpt, lengths
drawn wide so `prompts_filter` has something to filter), small enough to
ship. Point a scenario's `prompts:` at a real ShareGPT dump to replay it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from loadkit.protocols.text import WORDS  # noqa: E402 - after the path is set

OUT = ROOT / "workloads" / "data" / "sharegpt-sample.json"


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conversations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = []
    for i in range(args.conversations):
        turns = [{"from": "system", "value": words(rng, 30)}] if rng.random() < 0.3 else []
        for _ in range(rng.randint(1, 4)):
            turns.append({"from": "human", "value": words(rng, int(rng.lognormvariate(3.5, 0.8)) + 1)})
            turns.append({"from": "gpt", "value": words(rng, rng.randint(10, 200))})
        out.append({"id": f"synthetic-{i}", "conversations": turns})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(out)} conversations)")


if __name__ == "__main__":
    main()
