#!/usr/bin/env bash
# The main job end to end on the embedded default: installs what is missing, builds the
# `sbgq` tool and runs `sbgq demo`. Extra arguments go to `sbgq demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build --preset release --target sbgq_cli
exec build/release/examples/sbgq demo "$@"
