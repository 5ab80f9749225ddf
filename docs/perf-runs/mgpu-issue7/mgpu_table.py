#!/usr/bin/env python3
"""Tables of docs/performance.md (issue 7, the multi-GPU coordinator) from the logs of
run_mgpu.sh / run_mgpu2.sh: `python3 mgpu_table.py RUN_DIR [RUN_DIR ...]`.

Every figure is read from a `moerack bench forward` log of the run or computed from them; the
physical limits are the H200's datasheet numbers (HBM3e 4.8 TB/s per GPU, NVLink 4 with 18 links:
450 GB/s each way between the two GPUs, `nvidia-smi topo -m` shows NV18 in the run)."""
import glob
import os
import re
import sys

HBM = 4.8e12      # bytes/s, per H200
NVLINK = 450e9    # bytes/s, one direction, 18 NVLink 4 links


def parse(path):
    t = open(path).read()
    r = {"name": os.path.basename(path)[:-4]}
    m = re.search(r"\((\d+) layers, hidden \d+, (\d+) experts", t)
    if not m:
        return None
    r["layers"], r["experts"] = int(m[1]), int(m[2])
    r["stages"] = [(int(a), int(b), int(c), float(d), float(e)) for a, b, c, d, e in re.findall(
        r"stage (\d+)\s+device (\d+): layers \d+-(\d+), planned ([\d.]+) GB, ([\d.]+) GB of", t)]
    m = re.search(r"decode bytes\s+([\d.]+) MB/token \(weights ([\d.]+) MB \+ lightning state r/w ([\d.]+) MB", t)
    r["bytes_token"], r["state"] = float(m[2]) * 1e6, float(m[3]) * 1e6
    m = re.search(r"prefill\s+(\d+) tokens in ([\d.]+) s = ([\d.]+) tokens/s", t)
    r["plen"], r["prefill"] = int(m[1]), float(m[3])
    m = re.search(r"decode\s+(\d+) tokens in ([\d.]+) s = ([\d.]+) tokens/s \(best of 3 rounds; median ([\d.]+)", t)
    if m:
        r["batch"], r["decode"], r["median"] = 1, float(m[3]), float(m[4])
    else:
        m = re.search(r"decode\s+batch (\d+): (\d+) steps in ([\d.]+) s = ([\d.]+) tokens/s, [\d.]+ per "
                      r"sequence \(best of 3 rounds; median ([\d.]+)", t)
        r["batch"], r["decode"], r["median"] = int(m[1]), float(m[4]), float(m[5])
    r["copies"] = [(int(a), float(b) * 1e3, float(c), float(d)) for a, b, c, d in re.findall(
        r"stage copy\s+(\d+) tokens? \(([\d.]+) KB\): ([\d.]+) us waited for, ([\d.]+) us each", t)]
    r["created"] = float(re.search(r"model created in ([\d.]+) s", t)[1])
    return r


def main():
    runs = []
    for d in sys.argv[1:]:
        for p in sorted(glob.glob(os.path.join(d, "*.txt"))):
            r = parse(p)
            if r:
                r["run"] = os.path.basename(os.path.normpath(d))
                runs.append(r)
    print("| run / log | experts per layer | GPUs: layers | in use per GPU GB | prefill tok/s | decode batch | "
          "decode tok/s (median) | step ms | weights read per step GB/s | of HBM (one GPU at a time) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        gpus = ", ".join(f"GPU {d}: 0-{last}" if s == 0 else f"GPU {d}: {r['stages'][s - 1][2] + 1}-{last}"
                         for s, d, last, _, _ in r["stages"])
        mem = " / ".join(f"{used:.1f}" for *_, used in r["stages"])
        steps = r["decode"] / r["batch"]
        bw = steps * (r["bytes_token"] + r["batch"] * r["state"])
        print(f"| {r['run']} {r['name']} | {r['experts']} | {gpus} | {mem} | {r['prefill']:.0f} | {r['batch']} | "
              f"{r['decode']:.2f} ({r['median']:.2f}) | {1e3 / steps:.2f} | {bw / 1e9:.0f} | {100 * bw / HBM:.0f}% |")
    # 1 GPU vs 2 GPUs, same run, same model and batch
    print()
    print("| run | experts | batch | 1 GPU tok/s | 2 GPUs tok/s | 2 GPUs / 1 GPU (decode) | prefill 2/1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for a in runs:
        for b in runs:
            if (a["run"] == b["run"] and a["experts"] == b["experts"] and a["batch"] == b["batch"]
                    and len(a["stages"]) == 1 and len(b["stages"]) == 2):
                print(f"| {a['run']} | {a['experts']} | {a['batch']} | {a['decode']:.2f} (GPU {a['stages'][0][1]}) | "
                      f"{b['decode']:.2f} | {b['decode'] / a['decode']:.3f} | {b['prefill'] / a['prefill']:.3f} |")
    print()
    print("| run / log | stage copy | bytes | waited for us | in a row us | GB/s | of NVLink one way | "
          "of its step (waited for) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        steps = r["decode"] / r["batch"]
        for tokens, nbytes, lat, row in r["copies"]:
            gbs = nbytes / (row * 1e-6)
            # one token: a decode step of batch 1; a chunk: the prefill step of that many tokens
            step_s = 1 / steps if tokens == 1 else tokens / r["prefill"]
            print(f"| {r['run']} {r['name']} | {tokens} token{'s' if tokens > 1 else ''} | {nbytes:.0f} | {lat:.1f} | "
                  f"{row:.1f} | {gbs / 1e9:.1f} | {100 * gbs / NVLINK:.0f}% | "
                  f"{100 * lat * 1e-6 / step_s:.3f}% ({'decode' if tokens == 1 else 'prefill'}) |")


if __name__ == "__main__":
    main()
