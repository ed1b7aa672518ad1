#!/usr/bin/env bash
# The GPU check, in under 8 minutes on one H100 or H200 with the project installed (bash scripts/setup.sh
# server,dev): the GPU-only tests (the NVML energy attribution among them), `bench` at concurrency 1/32/128/512
# with the embedding on CUDA, `gateway-bench` at 1 and 32, then one table against the targets (>= 5,000 routes/s
# at p99 <= 25 ms; the gateway adding <= 3 ms at concurrency 1). Without a GPU it says so and exits 3.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi finds none): nothing to check; run it on a GPU host" >&2
  exit 3
fi
if [ ! -x .venv/bin/python ]; then
  echo "gpu-check: no .venv: run bash scripts/setup.sh server,dev first" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The transformer itself on CUDA, whatever the CPU default backend is (the static table needs no GPU).
export BANDIT_ROUTER_EMBEDDING_BACKEND=${BANDIT_ROUTER_EMBEDDING_BACKEND:-torch}
out=${GPU_CHECK_OUT:-$(mktemp -d -t gpu-check-XXXXXX)}
mkdir -p "$out"
nvidia-smi -L | tee "$out/gpus.txt"
set +e
.venv/bin/python -m pytest -q -rs tests/energy/test_energy_gpu.py tests/embedding/test_embedding.py \
  -k "gpu or cuda or energy" > "$out/tests.log" 2>&1
echo "$?" > "$out/tests.rc"
set -e
tail -n 3 "$out/tests.log"
.venv/bin/bandit-router bench --concurrency 1 32 128 512 --requests 4000 --device cuda --json "$out/bench.json"
.venv/bin/bandit-router gateway-bench --concurrency 1 32 --requests 1000 --device cuda --json "$out/gateway.json"
.venv/bin/python -m bandit_router.bench.gpu_check "$out"
