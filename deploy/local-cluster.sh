#!/usr/bin/env bash
# Starts a whole moerack cluster on this machine from a cluster config (default configs/local.cfg):
# the coordinator and every worker the config lists, waits until `moerack status` says HEALTHY,
# sends a request, prints the answer and the status table, then stops everything.
#   deploy/local-cluster.sh [CONFIG] [--keep]     --keep leaves the cluster running
# Logs go to build/local-cluster/. Assumes deploy/build.sh has been run.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg=configs/local.cfg
keep=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    *) cfg=$a ;;
  esac
done
bin=build
logs=build/local-cluster
mkdir -p "$logs"
workers=$("$bin/worker/moerack-worker" --config "$cfg" --dump-config | awk '/^    name = /{gsub(/[";]/,"",$3); print $3}')
"$bin/coordinator/moerack-coordinator" --config "$cfg" >"$logs/coordinator.log" 2>&1 &
pids=($!)
for w in $workers; do
  "$bin/worker/moerack-worker" --config "$cfg" --name "$w" >"$logs/$w.log" 2>&1 &
  pids+=($!)
done
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
if [[ $keep == 0 ]]; then trap stop EXIT; fi
echo "== waiting for the cluster ($(echo $workers | wc -w) workers) to become HEALTHY"
for i in $(seq 1 300); do
  if "$bin/cli/moerack" status --config "$cfg" >/dev/null 2>&1; then break; fi
  if ! kill -0 "${pids[0]}" 2>/dev/null; then
    echo "the coordinator exited; see $logs/coordinator.log" >&2
    tail -5 "$logs/coordinator.log" >&2
    exit 1
  fi
  sleep 0.2
done
"$bin/cli/moerack" status --config "$cfg" >/dev/null || { echo "cluster not healthy; logs in $logs" >&2; exit 1; }
http=$("$bin/worker/moerack-worker" --config "$cfg" --dump-config | awk '/^  http_listen = /{gsub(/[";]/,"",$3); print $3}')
if [[ -n "$http" ]]; then
  for i in $(seq 1 50); do curl -sf "http://$http/health/ready" >/dev/null && break; sleep 0.2; done
  echo "== request: POST http://$http/v1/chat/completions (the demo model has random weights: expect noise)"
  curl -sS "http://$http/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"model": "MiniMax-M1", "messages": [{"role": "user", "content": "Hello! Who are you?"}], "max_tokens": 24, "temperature": 0.7, "seed": 1}'
  echo
else
  echo "== request: greedy continuation of token ids 200019,1,2,3 (16 tokens) through the cluster"
  "$bin/cli/moerack" run --config "$cfg" --ids 200019,1,2,3 --greedy 16
fi
echo "== moerack status"
"$bin/cli/moerack" status --config "$cfg"
if [[ $keep == 1 ]]; then echo "cluster left running: pids ${pids[*]}"; fi
