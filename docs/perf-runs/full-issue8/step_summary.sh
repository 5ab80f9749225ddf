#!/bin/bash
# Averages the coordinator's per-step profile lines (--log-level debug, coordinator/step_prof.h)
# by step shape (tokens, sequences, micro-batches): seconds per step in each phase.
#   docs/perf-runs/full-issue8/step_summary.sh coord.log
grep "step:" "$1" | sed 's/.*step: //' | awk '
{ key = sprintf("%5d tok %3d seq %d mb", $1, $4, $7); n[key]++; S[key] += $12; A[key] += $16; D[key] += $25;
  X[key] += $28; C[key] += $31; U[key] += $36; R[key] += $39 }
END { printf "%-22s %4s %9s %9s %9s %9s %9s %9s %9s\n", "step", "n", "total s", "attention",
        "MoE down", "dispatch", "combine", "MoE up", "rest";
      for (k in n) printf "%-22s %4d %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f\n", k, n[k],
        S[k]/n[k], A[k]/n[k], D[k]/n[k], X[k]/n[k], C[k]/n[k], U[k]/n[k], R[k]/n[k] }' | sort -n
