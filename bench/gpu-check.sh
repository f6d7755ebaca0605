#!/usr/bin/env bash
# GPU telemetry check, for a machine with an NVIDIA GPU (about 2 minutes).
#
# Starts bench/gpu_server.py (a random transformer on CUDA behind an
# OpenAI-compatible /v1/chat/completions), runs a short loadkit workload at
# two load levels with NVML sampling, prints the numbers, and fails unless
# utilisation, power and energy samples are present, non-zero, and higher at
# the higher load.
#
#   pip install -e . torch && bench/gpu-check.sh
#
# Environment: PYTHON (default python3), GPU_CHECK_DEVICE (default cuda),
# GPU_CHECK_SECONDS (measured seconds per level, default 30),
# GPU_CHECK_KEEP=1 keeps the work folder (run.json, reports) for a look.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SECONDS_PER_LEVEL=${GPU_CHECK_SECONDS:-30}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/loadkit-gpu-check.XXXXXX")
SERVER_PID=""

say() { printf 'gpu-check: %s\n' "$*"; }
fail() { printf 'gpu-check: FAIL: %s\n' "$*" >&2; exit 1; }
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${GPU_CHECK_KEEP:-0}" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 0. what this machine has ---------------------------------------------------------
cd "$ROOT"
"$PY" -c 'import loadkit' 2>/dev/null || fail "loadkit is not importable with $PY: pip install -e ."
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,driver_version,power.draw,utilization.gpu \
        --format=csv,noheader || true
fi
"$PY" - <<'EOF' || fail "NVML cannot see a GPU (see above); this check needs an NVIDIA GPU and driver"
import pynvml
pynvml.nvmlInit()
n = pynvml.nvmlDeviceGetCount()
print(f"gpu-check: NVML {pynvml.nvmlSystemGetDriverVersion()}: {n} GPU(s)")
raise SystemExit(0 if n > 0 else 1)
EOF
if [ "$DEVICE" != cpu ]; then
    "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
        || fail "PyTorch with CUDA is needed for the test server: pip install torch"
fi

# --- 1. the GPU-backed server -----------------------------------------------------------
"$PY" bench/gpu_server.py --port 0 --device "$DEVICE" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 240); do  # up to 120 s: importing torch, first CUDA kernels
    URL=$(sed -n 's/^GPU_SERVER_LISTENING //p' "$WORK/server.out")
    [ -n "$URL" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/server.err" >&2
        fail "the GPU server exited before listening"
    fi
    sleep 0.5
done
[ -n "$URL" ] || fail "the GPU server did not start within 120 s"
say "server at $URL ($DEVICE)"

# --- 2. two load levels -------------------------------------------------------------------
# low: one request a second; high: 8 in flight all the time (a closed loop keeps
# the GPU busy without piling up a queue the server cannot drain).
write_workload() {  # name arrival
    cat >"$WORK/$1.yaml" <<EOF
name: gpu-check-$1
seed: 7
warmup: 3s
duration: ${SECONDS_PER_LEVEL}s
interval: 1s
lateness_bound: 50ms
client: {timeouts: {total: 120s}}
arrival: $2
scenarios:
  - {name: chat, kind: openai-chat, stream: false, model: gpu-check-random,
     prompt_tokens: 32, max_tokens: 16}
telemetry: {nvml: true, interval: 250ms, price_per_gpu_hour: 2.0}
EOF
}
write_workload low "{process: constant, rate: 1}"
write_workload high "{process: closed, concurrency: 8}"

for level in low high; do
    say "running $level load for ${SECONDS_PER_LEVEL}s (+3s warm-up)"
    rc=0
    "$PY" -m loadkit run "$WORK/$level.yaml" --target "$URL" --out "$WORK/$level" -q \
        --inconclusive pass --allow-saturated || rc=$?
    [ -f "$WORK/$level/run.json" ] || fail "$level: loadkit wrote no run.json (exit $rc)"
    say "$level: loadkit exit $rc"
done

# --- 3. the checks -----------------------------------------------------------------------
"$PY" - "$WORK/low/run.json" "$WORK/high/run.json" <<'EOF'
import json
import sys

low, high = (json.load(open(p)) for p in sys.argv[1:3])
problems = []


def figures(name, doc):
    t = doc["telemetry"]
    nvml = next((s for s in t["sources"] if s["kind"] == "nvml"), {})
    if nvml.get("status") != "ok":
        problems.append(f"{name}: NVML source {nvml.get('status')}: {nvml.get('reason')}")
    a = t["all"]
    for key in ("gpu.util.mean", "gpu.power.mean", "energy_j", "energy_per_request"):
        if not a.get(key):
            problems.append(f"{name}: {key} is missing or zero")
    for field in ("util", "power", "energy"):
        pts = [p for k, s in t["series"].items() if k.endswith("." + field)
               and s.get("source") != "prometheus" for p in s["points"]]
        if not pts:
            problems.append(f"{name}: no {field} samples")
        elif not any(v > 0 for _t, v in pts):
            problems.append(f"{name}: every {field} sample is zero")
    return {"requests": doc["counts"]["completed"], "req/s": doc["throughput"]["requests_per_s"],
            "util %": a.get("gpu.util.mean"), "util max %": a.get("gpu.util.max"),
            "power W": a.get("gpu.power.mean"), "energy J": a.get("energy_j"),
            "J/request": a.get("energy_per_request"),
            "J/1k tokens": a.get("energy_per_1k_output_tokens"),
            "$/1k req": a.get("cost_per_1k_requests"),
            "samples": sum(s["samples"] for s in t["sources"] if s["kind"] == "nvml"),
            "unsupported": sorted({f for g in t["gpus"] for f in g.get("unsupported", [])})}


lo, hi = figures("low", low), figures("high", high)
print(f"{'':14}{'low':>16}{'high':>16}")
for key in lo:
    print(f"{key:14}{str(lo[key]):>16}{str(hi[key]):>16}")
for key in ("util %", "power W", "energy J"):
    if lo[key] is not None and hi[key] is not None and not hi[key] > lo[key]:
        problems.append(f"{key}: high load ({hi[key]}) is not above low load ({lo[key]})")
if problems:
    print("gpu-check: FAIL:\n  " + "\n  ".join(problems), file=sys.stderr)
    sys.exit(1)
print("gpu-check: PASS: utilisation, power and energy present, non-zero, higher under load")
EOF
