#!/usr/bin/env python3
"""Renders the official MiniMax-M1 chat template with Jinja, exactly as Hugging Face transformers
does (ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loopcontrols; `tojson` =
json.dumps(ensure_ascii=False)), for every case of tests/data/chat_template/conversations.json.
Writes goldens.json, which test_chat_template compares moerack's native renderer against.

OpenAI-shaped messages (string content, reasoning_content, tool_calls, tool_call_id) are first
brought into the template's shape by `to_template_shape`, the documented conversion that
coordinator/chat_template.c implements (docs/tokenizer.md); messages already in that shape pass
through unchanged, so those cases are the template alone.

  /usr/bin/python3 tests/reference/render_chat_template.py   # Debian python3-jinja2
"""
import json
import math
import os
import random
import struct
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(ROOT, "..", "shared", "minimax-m1")
DATA = os.path.join(ROOT, "tests", "data", "chat_template")


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers.utils.chat_template_utils: Jinja's own tojson would sort keys and escape HTML
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def text_parts(content):
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    return content


def to_template_shape(messages):
    out = []
    for i, m in enumerate(messages):
        m = dict(m)
        role = m.get("role")
        if role in ("system", "user"):
            m["content"] = text_parts(m.get("content"))
        elif role == "assistant":
            text = ""
            if m.get("reasoning_content"):
                text += "<think>\n" + m["reasoning_content"] + "\n</think>\n"
            for p in text_parts(m.get("content")):
                if isinstance(p, dict) and p.get("type") == "text" and "text" in p:
                    text += p["text"]
            if m.get("tool_calls"):
                if text and not text.endswith("\n"):
                    text += "\n"
                text += "<tool_calls>\n"
                for c in m["tool_calls"]:
                    args = c["function"]["arguments"]
                    if isinstance(args, str):
                        args = json.loads(args)
                    text += json.dumps({"name": c["function"]["name"], "arguments": args},
                                       ensure_ascii=False) + "\n"
                text += "</tool_calls>"
            if ("reasoning_content" in m or "tool_calls" in m or
                    not isinstance(m.get("content"), list)):
                m = {"role": "assistant", "content": [{"type": "text", "text": text}]}
        elif role == "tool" and isinstance(m.get("content"), str):
            name = m.get("name")
            if name is None:
                for prev in reversed(out):
                    for c in prev.get("_calls", []):
                        if c.get("id") == m.get("tool_call_id"):
                            name = c["function"]["name"]
                            break
                    if name is not None:
                        break
            m = {"role": "tool", "content": [{"type": "text", "name": name, "text": m["content"]}]}
        if role == "assistant":
            m["_calls"] = messages[i].get("tool_calls") or []
        out.append(m)
    for m in out:
        m.pop("_calls", None)
    return out


def main():
    cfg = json.load(open(os.path.join(SHARED, "tokenizer_config.json"), encoding="utf-8"))
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    template = env.from_string(cfg["chat_template"])
    cases = json.load(open(os.path.join(DATA, "conversations.json"), encoding="utf-8"))
    goldens = []
    for case in cases:
        req = case["request"]
        rendered = template.render(
            messages=to_template_shape(req["messages"]), tools=req.get("tools"),
            add_generation_prompt=req.get("add_generation_prompt", True),
            bos_token=cfg["bos_token"], eos_token=cfg["eos_token"], unk_token=cfg["unk_token"])
        goldens.append({"name": case["name"], "rendered": rendered})
    meta = {"generator": "tests/reference/render_chat_template.py",
            "jinja2": jinja2.__version__, "python": sys.version.split()[0]}
    with open(os.path.join(DATA, "goldens.json"), "w", encoding="utf-8") as f:
        json.dump({"meta": meta, "cases": goldens}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{len(goldens)} cases rendered with jinja2 {jinja2.__version__}")
    # Python's repr of doubles, which `tojson` writes: edge values and random bit patterns
    rng = random.Random(5)
    vals = [0.0, -0.0, 1.0, -1.5, 0.1, 1e-05, 0.0001, 1e16, 1e15, 123456789.125, 5e-324,
            1.7976931348623157e308, 2.2250738585072014e-308, 1 / 3, 2 / 3, 100.0, 1e22, 1e-7]
    while len(vals) < 2000:
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            vals.append(x)
        vals.append(round(rng.uniform(-1e6, 1e6), rng.randrange(0, 8)))
    with open(os.path.join(DATA, "float_repr.json"), "w") as f:
        json.dump([repr(v) for v in vals], f, indent=0)
        f.write("\n")


if __name__ == "__main__":
    main()
