#!/usr/bin/env bash
# Fails if any C source differs from .clang-format's style (style.md rule 20).
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files '*.c' '*.h' '*.cu' '*.cuh' | xargs clang-format --dry-run --Werror
echo "format: clean"
