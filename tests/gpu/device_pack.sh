#!/usr/bin/env bash
# Packs what a GPU run needs into DIR (for the lent GPU machine, which has CUDA but none of our
# Debian libraries): the test/bench binaries of BUILD, the shared libraries they need that are not
# part of glibc or CUDA, the goldens and the bench scripts. Binaries not built are left out (each
# run script checks for what it needs).
#   tests/gpu/device_pack.sh BUILD DIR
set -euo pipefail
build=$1 dir=$2
src=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$dir"; mkdir -p "$dir/bin" "$dir/lib" "$dir/golden"
bins="cli/moerack coordinator/moerack-coordinator worker/moerack-worker tests/tools/golden_check
      tests/tools/cluster_check tests/gpu/test_cuda_experts tests/bench/bench_cuda_experts
      tests/gpu/test_cuda_attention tests/gpu/test_cuda_coord_ops tests/bench/bench_cuda_attention
      tests/bench/bench_attn_slice tests/bench/bench_cuda_linear tests/gpu/test_cuda_sample
      tests/bench/bench_cuda_sample tests/tools/sample_path_check tests/gpu/test_cuda_dmabuf
      tests/gpu/test_cuda_rx tests/gpu/test_cuda_gpu_copies"
for b in $bins; do [ -f "$build/$b" ] && cp "$build/$b" "$dir/bin/"; done
for b in "$dir"/bin/*; do
  ldd "$b" | awk '/=> \//{print $3}' | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s*|libstdc++*|libcuda*|libcublas*|libcudart*|libnvidia*) ;;
      *) cp -L -n "$lib" "$dir/lib/" ;;
    esac
  done
done
cp -r "$src/tests/data/golden/"* "$dir/golden/"
cp "$src/tests/bench/"*.py "$dir/" 2>/dev/null || true
du -sh "$dir"
