#!/usr/bin/env bash
# Set up (if needed) and run the embedded toy-city demo: `sci2i run` with no argument.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sci2i run "$@"
