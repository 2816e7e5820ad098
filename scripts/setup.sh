#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a virtual environment in .venv with the CPU build of
# PyTorch and sci2i installed in editable mode. Re-running it is cheap: it only reinstalls
# when pyproject.toml changed. Set SCI2I_TORCH to pick another torch (e.g. a CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${SCI2I_VENV:-.venv}"
TORCH_SPEC="${SCI2I_TORCH:-torch==2.13.0}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.sci2i-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
    # torch first, pinned: an unpinned torch pulled in by a dependency would be a CUDA build.
    "$VENV/bin/python" -m pip install -q "$TORCH_SPEC" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -m pip install -q -e ".[test]" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import torch, sci2i" # fail loudly if the install did not work
    echo "$WANT" > "$STAMP"
fi
