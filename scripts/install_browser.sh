#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through its ChromeDriver; install both when missing.
# Runs as part of `make test`. Without root (or sudo) it says what to install and the browser tests
# are skipped, which a CI run (CI set) counts as a failure.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
install=(apt-get install -y -qq chromium chromium-driver)
update=(apt-get update -qq)
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null; then
    echo "chromium and chromium-driver are missing and there is no root to install them:" \
         "apt-get install chromium chromium-driver (the browser tests are skipped until then)" >&2
    exit 0
  fi
  install=(sudo "${install[@]}")
  update=(sudo "${update[@]}")
fi
echo "installing chromium and chromium-driver for the browser tests"
export DEBIAN_FRONTEND=noninteractive
"${install[@]}" >/dev/null || { "${update[@]}" && "${install[@]}" >/dev/null; }
