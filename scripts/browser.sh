#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test when it is missing (Playwright drives the
# system browser; it never downloads one).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  apt="sudo apt-get"
else
  apt="apt-get"
fi
export DEBIAN_FRONTEND=noninteractive
$apt install -y --no-install-recommends chromium >/dev/null || { $apt update >/dev/null && $apt install -y --no-install-recommends chromium >/dev/null; }
