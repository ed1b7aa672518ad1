#!/usr/bin/env bash
# Sets up, then serves on 127.0.0.1:50051 with the embedded defaults (its own Redis, the shipped
# catalog, the bundled embedding model). Extra arguments go to `bandit-router serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/bandit-router serve "$@"
