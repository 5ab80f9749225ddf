#!/usr/bin/env bash
# The main job, one command on a fresh Debian 12 machine: install dependencies, build, make the
# demo model (synthetic weights in the real MiniMax-M1 layout, real vocabulary size), start a local
# cluster (a coordinator and two expert workers on loopback, configs/local.cfg), send it a request,
# print the answer and the cluster status.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
deploy/build.sh
model=build/models/demo   # configs/local.cfg serves this directory
mkdir -p "$(dirname "$model")"
[ -f "$model/config.json" ] || build/cli/moerack model gen-tiny "$model" --preset demo --seed 1
# the MiniMax-M1 tokenizer, rebuilt from the official release's merges.txt
[ -f "$model/tokenizer.json" ] || build/cli/moerack tokenize \
    --minimax-merges ../shared/minimax-m1/merges.txt --write-tokenizer-json "$model/tokenizer.json"
build/cli/moerack model inspect "$model"
deploy/local-cluster.sh configs/local.cfg
