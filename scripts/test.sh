#!/usr/bin/env bash
# Sets up, then runs everything CI runs: lint, types, the generated-code check and the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh server,dev
# What two tests need from outside the venv, made sure of here so that they run rather than skip:
# Debian's chromium (the dashboard in a browser) and the wheels a client-only install takes
# (tests/client/test_light_install.py installs from this folder, with no registry).
bash scripts/browser.sh
.venv/bin/python -m pip download --quiet --disable-pip-version-check -c scripts/constraints.txt \
  --dest .venv/wheelhouse "setuptools>=68" "httpx>=0.27"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
set +e
# -rs: every skipped test is listed at the end, with its reason.
.venv/bin/python -m pytest -q -rs "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
exit "$status"
