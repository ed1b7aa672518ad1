#!/usr/bin/env bash
# Creates .venv with everything bandit-router needs. torch comes first, as the local CPU wheel:
# any other way of installing it pulls gigabytes of CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[server,dev]"
