#!/usr/bin/env bash
# Checks the GPU-ready AMI before the agent starts: docker, compose, the NVIDIA driver and the
# NVIDIA container runtime. Configures the runtime when the toolkit is there but docker lacks it.
# Exit 1 with one line per problem (cloud-init logs it to /var/log/cloud-init-output.log).
set -uo pipefail

problems=0
fail() { echo "provision preflight: $*" >&2; problems=$((problems + 1)); }

command -v docker >/dev/null 2>&1 || fail "docker is not installed on this AMI"
systemctl enable --now docker >/dev/null 2>&1 || fail "docker.service does not start"
docker compose version >/dev/null 2>&1 || fail "the docker compose plugin is missing"
command -v nvidia-smi >/dev/null 2>&1 || fail "nvidia-smi is missing: not a GPU-ready AMI?"
nvidia-smi -L >/dev/null 2>&1 || fail "nvidia-smi sees no GPU (instance type, driver?)"

if ! docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia; then
  if command -v nvidia-ctk >/dev/null 2>&1; then
    if ! { nvidia-ctk runtime configure --runtime=docker >/dev/null && systemctl restart docker; }; then
      fail "nvidia-ctk could not configure docker's nvidia runtime"
    fi
  else
    fail "the NVIDIA container toolkit (nvidia-ctk) is missing"
  fi
fi

if [ "$problems" -gt 0 ]; then
  echo "provision preflight: ${problems} problem(s); the agent will not become ready" >&2
  exit 1
fi
echo "provision preflight: docker, compose, GPU and NVIDIA runtime OK"
