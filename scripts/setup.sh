#!/usr/bin/env bash
# Creates .venv with bandit-router and the extras named as the first argument (default "server"):
# `bash scripts/setup.sh server` for the demo, `bash scripts/setup.sh server,dev` for the tests.
# torch comes first, built for this machine: the CPU build where there is no CUDA (a local wheel when pip
# finds one, else PyTorch's CPU wheel index, as deploy/docker/Dockerfile does), the CUDA build where there is.
# Tools whose output the tests compare are pinned in scripts/constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-server}
torch_version=2.13.0
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check)

if .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$torch_version')" 2>/dev/null; then
  echo "setup: torch $torch_version already installed"
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: a CUDA GPU is present: installing torch $torch_version with CUDA"
  "${pip[@]}" install --quiet "torch==$torch_version"
elif "${pip[@]}" install --quiet --dry-run --no-deps --no-index "torch==$torch_version" >/dev/null 2>&1; then
  echo "setup: no CUDA: installing torch $torch_version from the CPU wheel found on this machine"
  "${pip[@]}" install --quiet "torch==$torch_version"
else
  echo "setup: no CUDA: installing torch $torch_version from PyTorch's CPU wheel index"
  "${pip[@]}" install --quiet "torch==$torch_version" --index-url https://download.pytorch.org/whl/cpu
fi
"${pip[@]}" install --quiet -c scripts/constraints.txt -e ".[$extras]"
# What the configured embedding backend builds from the bundled model (once per machine; a no-op when built).
case ",$extras," in
  *,server,*) HF_HUB_OFFLINE=1 .venv/bin/bandit-router embedding-build ;;
esac
