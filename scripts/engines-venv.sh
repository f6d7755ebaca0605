#!/usr/bin/env bash
# The real inference engines the `engines` test tier starts (tests/engines/),
# in a virtual environment of their own, cached outside the checkout: the
# first run installs (torch's CPU build and transformers' server, ~1 GB), later
# runs reuse it. Prints the environment's python for LOADKIT_ENGINE_PYTHON.
set -euo pipefail
pins=(torch==2.13.0 'transformers[serving]==5.25.0')
key=$(printf '%s\n' "${pins[@]}" | sha256sum | cut -c1-12)
venv=${LOADKIT_ENGINES_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/loadkit/engines-$key}
if ! "$venv/bin/python" -c 'import torch, transformers, fastapi, uvicorn' 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  # torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
  "$venv/bin/pip" install -q "${pins[0]}" >&2
  "$venv/bin/pip" install -q "${pins[@]}" >&2
fi
echo "$venv/bin/python"
