#!/usr/bin/env bash
# Replays both public datasets at three trade-offs and prints the bandit against the issue's targets.
# Usage: bash simulations/targets.sh [DATA_DIR] [OUT_DIR]   (defaults: ../shared/data, simulations/results)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
out=${2:-simulations/results}
router=.venv/bin/bandit-router
mkdir -p "$out"
$router convert routeprofile --data "$data/routeprofile" --out "$out/routeprofile.jsonl"
$router convert llmrouter --data "$data/llmrouter" --split test --out "$out/llmrouter-test.jsonl"
for traffic in routeprofile llmrouter-test; do
  # The server defaults (energy 0.1, cost 0.1), quality only, and a frugal setting.
  for weights in "0.1 0.1" "0 0" "1 1"; do
    set -- $weights
    $router --log-level WARNING replay "$out/$traffic.jsonl" --shuffle --seed 0 \
      --energy-weight "$1" --cost-weight "$2" --out "$out/$traffic-e$1-c$2" >/dev/null 2>&1
  done
done
.venv/bin/python simulations/summarize.py "$out"
