#!/usr/bin/env bash
# Install provision and run the main job against local emulators (no cloud account):
#   bash scripts/sandbox.sh [CONFIG]       (default: examples/dev.asg.yaml)
# It validates the config, applies it to the sandbox (moto for AWS, a Cloudflare emulator, pebble for
# ACME), applies again to show nothing is left to do, and prints the stack's status and outputs.
# Idempotent: a second run reuses what the first installed. `provision sandbox down` stops the emulators.
set -euo pipefail
cd "$(dirname "$0")/.."
config="${1:-examples/dev.asg.yaml}"

# shellcheck source=scripts/lib.sh
. scripts/lib.sh

apt_install pebble          # the local ACME server
pip_install sandbox moto

export HF_TOKEN="${HF_TOKEN:-hf_sandbox_token}"
log "provision validate $config"
provision validate "$config"
log "provision apply $config --sandbox --yes"
provision apply "$config" --sandbox --yes
log "provision plan $config --sandbox --detailed-exitcode (0 = nothing left to do)"
provision plan "$config" --sandbox --detailed-exitcode
log "provision status $config --sandbox"
provision status "$config" --sandbox
log "provision output $config --sandbox"
provision output "$config" --sandbox
log "done; 'provision destroy $config --sandbox --yes' removes it, 'provision sandbox down' stops the emulators"
