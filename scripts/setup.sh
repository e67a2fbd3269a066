#!/usr/bin/env bash
# Installs what sbgq's build, tests and demo need on a Debian 12 machine, only if missing:
# a C++20 compiler, CMake, Ninja, Eigen, simdjson, CLI11 and {fmt} (the sbgq tool only),
# doctest, Google Benchmark, and npm (which fetches the pinned llama.cpp oracle at configure
# time). Needs root (or sudo) for apt-get.
set -euo pipefail

pkgs=(g++ cmake ninja-build pkg-config libeigen3-dev libsimdjson-dev libcli11-dev libfmt-dev doctest-dev libbenchmark-dev nodejs npm)
if [[ "${SBGQ_WITH_CLANG:-0}" == 1 ]]; then pkgs+=(clang libclang-rt-14-dev); fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# npm may come from elsewhere (a node install outside apt): accept it if it runs.
if [[ " ${missing[*]} " == *" npm "* ]] && command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/npm}")
  missing=("${missing[@]/nodejs}")
fi
read -r -a missing <<<"${missing[*]}"

if ((${#missing[@]})); then
  echo "sbgq setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "sbgq setup: all packages present"
fi
