#!/usr/bin/env bash
# Integration checks of the text commands: `moerack tokenize`, `moerack chat-template` and
# `moerack run --prompt`, including their bad-input errors (one "error:" line, exit 1 or 2).
#   cli_text_check.sh MOERACK SOURCE_DIR WORK_DIR TINY_MODEL_DIR
set -euo pipefail
bin=$1 src=$2 work=$3 tiny=$4
merges=$src/../shared/minimax-m1/merges.txt
data=$src/tests/data
rm -rf "$work" && mkdir -p "$work"
fail() { echo "FAIL: $*"; exit 1; }

# one error line and the given exit status
expect_error() {
  local want_rc=$1 want_msg=$2; shift 2
  set +e
  "$@" >"$work/out" 2>"$work/err" </dev/null
  local rc=$?
  set -e
  [[ $rc == "$want_rc" ]] || fail "$* exited $rc, not $want_rc: $(cat "$work/err")"
  [[ $(grep -c '^error: ' "$work/err") == 1 ]] || fail "$*: not one error line: $(cat "$work/err")"
  grep -q -- "$want_msg" "$work/err" || fail "$*: error lacks '$want_msg': $(cat "$work/err")"
}

# 1. encode -> decode gives the text back; the exported tokenizer.json encodes the same
printf 'Hello, 世界! <end_of_sentence>\r\n\tdon'"'"'t 12345 😀\n' >"$work/text"
"$bin" tokenize --minimax-merges "$merges" <"$work/text" >"$work/ids"
"$bin" tokenize --minimax-merges "$merges" --decode <"$work/ids" >"$work/back"
cmp "$work/text" "$work/back" || fail "decode(encode(x)) != x"
grep -q ',200020,' "$work/ids" || fail "<end_of_sentence> is not 200020: $(cat "$work/ids")"
"$bin" tokenize --minimax-merges "$merges" --write-tokenizer-json "$work/tokenizer.json"
"$bin" tokenize --tokenizer "$work/tokenizer.json" <"$work/text" | cmp - "$work/ids" ||
  fail "exported tokenizer.json encodes differently"
"$bin" tokenize --tokenizer "$work/tokenizer.json" --decode --skip-special <"$work/ids" |
  grep -q '^Hello, 世界! '$'\r''$' || fail "--skip-special"
"$bin" tokenize --vocab "$data/tokenizer/gpt2small/vocab.json" \
  --merges "$data/tokenizer/gpt2small/merges.txt" <"$work/text" >/dev/null
"$bin" tokenize --minimax-merges "$merges" --bench 2 <"$work/text" | grep -q 'MB/s' || fail bench

# 2. chat-template: the first golden conversation renders as Jinja did, and --tokenizer gives the
#    ids of that text
python3 - "$data/chat_template" "$work" <<'PY'
import json, sys
d, w = sys.argv[1], sys.argv[2]
conv = json.load(open(f"{d}/conversations.json", encoding="utf-8"))
gold = json.load(open(f"{d}/goldens.json", encoding="utf-8"))["cases"]
i = [c["name"] for c in conv].index("spec_example_tools_reasoning_tool_result")
json.dump(conv[i]["request"], open(f"{w}/req.json", "w"), ensure_ascii=False)
open(f"{w}/want.txt", "w", encoding="utf-8", newline="").write(gold[i]["rendered"])
PY
"$bin" chat-template <"$work/req.json" >"$work/got.txt"
cmp "$work/got.txt" "$work/want.txt" || fail "chat-template differs from the Jinja golden"
"$bin" chat-template --minimax-merges "$merges" <"$work/req.json" >"$work/chat.ids"
"$bin" tokenize --minimax-merges "$merges" <"$work/want.txt" | cmp - "$work/chat.ids" ||
  fail "chat-template --minimax-merges ids"

# 3. run --prompt on a checkpoint with MiniMax's vocabulary: the ids line is what --ids gives for
#    the encoded prompt, and the second line is their decoding
if [[ -n "$tiny" && -d "$tiny" ]]; then
  cp "$work/tokenizer.json" "$tiny/tokenizer.json"
  "$bin" run --model "$tiny" --prompt "The capital of France is" --greedy 5 >"$work/run.out"
  [[ $(wc -l <"$work/run.out") -ge 2 ]] || fail "run --prompt printed no decoded line"
  printf 'The capital of France is' | "$bin" tokenize --tokenizer "$tiny" >"$work/p.ids"
  "$bin" run --model "$tiny" --ids "$(cat "$work/p.ids")" --greedy 5 >"$work/run_ids.out"
  [[ $(wc -l <"$work/run_ids.out") == 1 ]] || fail "run --ids prints one line"
  head -n1 "$work/run.out" | cmp - "$work/run_ids.out" || fail "run --prompt vs --ids"
  head -n1 "$work/run.out" | "$bin" tokenize --tokenizer "$tiny" --decode >"$work/gen.txt"
  tail -n +2 "$work/run.out" | head -c "$(wc -c <"$work/gen.txt")" | cmp - "$work/gen.txt" ||
    fail "decoded line"
  "$bin" run --model "$tiny" --prompt "hi" --chat --greedy 1 >/dev/null
  expect_error 2 "not valid UTF-8 at byte 3" "$bin" run --model "$tiny" --prompt $'abc\xff' --greedy 1
fi

# 4. bad input: one clear error line each
expect_error 2 "exactly one of" "$bin" tokenize
expect_error 1 "No such file" "$bin" tokenize --tokenizer "$work/none.json"
printf 'abc\xc3' >"$work/bad.txt"
set +e; "$bin" tokenize --minimax-merges "$merges" <"$work/bad.txt" 2>"$work/err"; rc=$?; set -e
[[ $rc == 1 ]] && grep -q 'not valid UTF-8 at byte 3' "$work/err" || fail "invalid UTF-8 stdin"
printf '12,x' >"$work/bad.ids"
set +e; "$bin" tokenize --minimax-merges "$merges" --decode <"$work/bad.ids" 2>"$work/err"; rc=$?
set -e
[[ $rc == 2 ]] && grep -q "'x' is not an id" "$work/err" || fail "bad id list"
printf '{"model": 3}' >"$work/bad.json"
expect_error 1 "bad.json" "$bin" tokenize --tokenizer "$work/bad.json"
printf '[{"role": "wizard", "content": "x"}]' >"$work/badreq.json"
set +e; "$bin" chat-template <"$work/badreq.json" 2>"$work/err"; rc=$?; set -e
[[ $rc == 1 ]] && grep -q "role must be" "$work/err" || fail "bad chat request"
echo "cli text checks passed"
