#!/usr/bin/env bash
# Configures and builds moerack into BUILD_DIR (default build/). Extra arguments go to cmake.
#   deploy/build.sh                      release build
#   BUILD_DIR=build-asan deploy/build.sh -DMR_SANITIZE="address;undefined"
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -DMR_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
