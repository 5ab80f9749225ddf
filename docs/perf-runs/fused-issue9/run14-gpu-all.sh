#!/bin/bash
# Issue 9, session 7, run 14: the GPU tests of tests/gpu on final HEAD (what session 7 touched:
# the int4 pair in wq_frag.cuh, the wq launch split; everything else as before): goldens on cuda,
# cuda-gpu, cuda-int8, clusters on cuda / cuda-fast + bf16 wire, graphs bit for bit, the unit
# tests. Carry: .device-carry/packall.txz (bin/ + lib/ of tests/gpu/device_pack.sh), golden/.
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/packall.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/gpuall; mkdir -p $O; W=/tmp/w; mkdir -p $W
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
r() { local name=$1 t=$2; shift 2; timeout $t "$@" > $O/$name.log 2>&1; echo "$name rc=$? $(tail -1 $O/$name.log | cut -c1-100)"; }
for p in tiny small; do
  r golden_${p}_cuda 120 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend cuda --tol 1e-3
  r golden_${p}_cuda_gpu 120 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend cuda-gpu --tol 2e-2 --near-ties
  r golden_${p}_cuda_int8 120 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend cuda-int8 --tol 2e-2 --near-ties
done
r cluster_2w_cuda 180 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/c1 --workers 2 --worker-backend cuda --tol 1e-3 equivalence
r cluster_2w_cuda_fast_wire_bf16 180 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/c2 --workers 2 --worker-backend cuda-fast --wire-dtype bf16 --tol 0.15 equivalence
r graph_bitwise_tiny 120 sh tests/gpu/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g
r test_cuda_gpu_copies 60 $B/test_cuda_gpu_copies
r test_cuda_dmabuf 60 $B/test_cuda_dmabuf
r test_cuda_rx 120 $B/test_cuda_rx
r test_cuda_sample 200 $B/test_cuda_sample
r test_cuda_attention 200 $B/test_cuda_attention
tar -C $OUT -czf $OUT/gpuall.tgz gpuall
