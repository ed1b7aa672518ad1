#!/usr/bin/env bash
# Sets up, then runs the demo on the embedded defaults: a real router (its own Redis, the shipped
# catalog, the bundled embedding model) replaying a sample of real traffic, then keeping the router and its
# dashboard up until Ctrl-C. Extra arguments go to `bandit-router demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh server
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/bandit-router demo --hold "$@"
