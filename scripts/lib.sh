# shellcheck shell=bash
# Shared by scripts/sandbox.sh and scripts/test.sh (sourced, not run).

log() { printf '==> %s\n' "$*" >&2; }

# apt_install PKG...: install the Debian packages whose command is missing (idempotent).
apt_install() {
  local need=() pkg
  for pkg in "$@"; do
    command -v "$pkg" >/dev/null 2>&1 || [ -x "/usr/bin/$pkg" ] || need+=("$pkg")
  done
  [ "${#need[@]}" -eq 0 ] && return 0
  log "apt-get install ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

# pip_install EXTRA MODULE...: `pip install -e .[EXTRA]` unless this checkout is already the one
# installed and every module imports. Checked from outside the checkout, so a stale editable
# install (one made before a package was added) is caught rather than hidden by the cwd.
pip_install() {
  local extra="$1"; shift
  local here mods
  here="$PWD"
  mods=$(IFS=,; echo "$*")
  if ! (cd / && python3 - "$here" "$mods" >/dev/null 2>&1 <<'PY'
import importlib, os, sys
here, mods = sys.argv[1], sys.argv[2].split(",")
for m in ["provisioner", "userdata"] + [m for m in mods if m]:
    importlib.import_module(m)
import provisioner, userdata
for pkg in (provisioner, userdata):
    assert os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__))) == here, pkg.__file__
PY
  ); then
    log "pip install -e .[$extra]"
    python3 -m pip install -q --disable-pip-version-check -e ".[$extra]"
  fi
}
