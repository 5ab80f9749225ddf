#!/usr/bin/env bash
# The whole test suite: installs dependencies, builds, runs every ctest label in a normal build,
# then the unit and integration labels again under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/check-format.sh
jobs=$(nproc)
deploy/build.sh
(cd build && ctest --output-on-failure -j"$jobs")
BUILD_DIR=build-asan deploy/build.sh -DMR_SANITIZE="address;undefined" -DCMAKE_BUILD_TYPE=Debug
(cd build-asan && ctest --output-on-failure -j"$jobs" -L 'unit|integration')
echo "all tests passed"
