#!/usr/bin/env python3
"""Write workloads/traces/azure-sample.csv: a small synthetic trace in the
Azure LLM inference format (bursty arrivals over 5 minutes, long-tailed
token counts). Seeded, so the file is reproducible."""

import datetime as dt
import math
import random
from pathlib import Path

rng = random.Random(2023)
t = dt.datetime(2023, 11, 16, 18, 15, 0)
end = t + dt.timedelta(minutes=5)
rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
while True:
    t += dt.timedelta(seconds=rng.gammavariate(0.25, 1 / (4 * 0.25)))  # ~4 req/s, cv 2
    if t >= end:
        break
    prompt = max(8, int(rng.lognormvariate(math.log(600), 0.9)))
    output = max(1, int(rng.lognormvariate(math.log(120), 0.8)))
    rows.append(f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond:06d}0,{prompt},{output}")
out = Path(__file__).resolve().parent.parent / "workloads" / "traces" / "azure-sample.csv"
out.write_text("\n".join(rows) + "\n")
print(f"{len(rows) - 1} requests -> {out}")
