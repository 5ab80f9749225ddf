#!/usr/bin/env python3
"""Markdown table of bench_cuda_sample's JSON lines: device sampling vs the host path per batch size.

    sample_table.py bench_cuda_sample.jsonl
"""
import json
import sys


def main(path):
    rows, floor = [], None
    with open(path) as f:
        for line in f:
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("op") == "sample_call_floor":
                floor = r["ms"]
            elif r.get("op") == "sample":
                rows.append(r)
    bw = rows[0]["copy_bw_gbs"] if rows else 0
    print(f"vocab {rows[0]['vocab']}; copy bandwidth {bw:.0f} GB/s" +
          (f"; call floor (32 ids, 1 row) {floor * 1e3:.1f} µs" if floor is not None else ""))
    print()
    split = rows and "device_1blk_ms" in rows[0]
    print("| params | batch | device ms | " + ("1 block / 8 blocks a row ms | " if split else "") +
          "logits down ms | host sampler ms | host path ms | "
          "speedup | limit ms (logits / bandwidth) | device / limit | rows handed back |")
    print("|---|---:|---:|" + ("---:|" if split else "") + "---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        host = r["download_ms"] + r["host_sample_ms"]
        sp = f"{r['device_1blk_ms']:.3f} / {r['device_8blk_ms']:.3f} | " if split else ""
        print(f"| {r['params']} | {r['batch']} | {r['device_ms']:.3f} | {sp}{r['download_ms']:.3f} | "
              f"{r['host_sample_ms']:.1f} | {host:.1f} | {host / r['device_ms']:.0f}x | "
              f"{r['limit_ms']:.4f} | {r['device_ms'] / r['limit_ms']:.0f}x | {r['on_host_rows']} |")


if __name__ == "__main__":
    main(sys.argv[1])
