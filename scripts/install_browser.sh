#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the console's browser tests (tests/console). Idempotent: does nothing
# when both are installed. Playwright drives this Chromium; it never downloads a browser of its own.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get here; install Chromium yourself (the browser tests skip without it)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
