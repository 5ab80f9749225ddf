#!/usr/bin/env bash
# The main job, one command on a fresh Debian 12 machine: install dependencies, build, make the
# demo model (synthetic weights in the real MiniMax-M1 layout, real vocabulary size) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
model=${MODEL_DIR:-build/models/demo}
mkdir -p "$(dirname "$model")"
[ -f "$model/config.json" ] || build/cli/moerack model gen-tiny "$model" --preset demo --seed 1
build/cli/moerack model inspect "$model"
echo "== greedy continuation of token ids 200019,1,2,3 (8 tokens):"
build/cli/moerack run --model "$model" --ids 200019,1,2,3 --greedy 8 --log-level info
