#!/usr/bin/env python3
"""Writes tests/data/tokenizer/corpus.json: the strings whose ids the tokenizer goldens fix.

Hand-written samples of each difficulty (English, code, CJK, emoji with ZWJ, combining marks,
numbers, whitespace runs, contractions, CRLF, special-token text) plus generated very long words
and the rendered chat-template goldens. Deterministic: rerunning gives the same file.
  python3 tests/reference/make_tokenizer_corpus.py
"""
import json
import os
import random
import unicodedata

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SAMPLES = [
    # English
    "Hello world",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX! the Quick bRoWn fOX?",
    "In 1969, Neil Armstrong said: \"That's one small step for [a] man, one giant leap for mankind.\"",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age "
    "of foolishness...\n\nChapter II — The Mail\n",
    "CamelCaseWordsAndHTTPServerURLParser XMLHttpRequest iPhone eBay McDonald's O'Neill IOException",
    "e.g. i.e. etc. Mr. Dr. U.S.A. a.m./p.m. -- --- ... ?!?! (parenthetical) [bracketed] {braced}",
    # contractions
    "don't won't can't I'm I'll I'd we've they're she's it's y'all rock'n'roll",
    "DON'T WON'T I'M I'LL WE'VE THEY'RE SHE'S IT'S 'S 'T 'RE 'VE 'M 'LL 'D",
    "don\u2019t it\u2019s (curly) it'ſ KELVIN \u212a 'Ll 'lL",
    # code
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint([fib(i) for i in range(10)])\n",
    "#include <stdio.h>\n\nint main(int argc, char **argv) {\n\tfor (int i = 0; i < argc; i++)\n\t\tprintf(\"%d: %s\\n\", i, argv[i]);\n\treturn 0;\n}\n",
    "const x = {a: 1, 'b': [2, 3], \"c\": null}; // comment\n/* block */ x?.a ?? x['b'][0] >>>= 2;\n",
    "SELECT u.id, COUNT(*) AS n FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at >= '2024-01-01' GROUP BY 1 HAVING n > 10;",
    "<html><body><div class=\"a b\">&lt;tag&gt; &amp; &#x1F600;</div></body></html>",
    "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": [1, 2, 3], \"x\": 1.5e-10}}",
    "| col1 | col2 |\n|------|------|\n| a    | b    |\n\n- item\n  - nested\n1. one\n```python\nx = 1\n```\n",
    "path/to/file.txt C:\\Windows\\System32 https://example.com/a/b?c=d&e=f#g user@example.org",
    # CJK and other scripts
    "我们今天去公园散步，天气非常好。你好世界！这是一个测试。",
    "日本語のテキストです。ひらがなとカタカナ、そして漢字が混ざっています。東京タワー",
    "한국어 텍스트입니다. 안녕하세요, 세계!",
    "Русский текст: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. עברית: שלום עולם. العربية: مرحبا بالعالم.",
    "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ हिन्दी में लिखा पाठ। தமிழ் உரை. ქართული ენა",
    "Mixed: English中文日本語한국어Русский123abc",
    # emoji
    "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466 family, \U0001F3F3\uFE0F\u200D\U0001F308 flag, "
    "\U0001F44D\U0001F3FD thumbs, \U0001F1EB\U0001F1F7 France, 1\uFE0F\u20E3 keycap, \U0001F9D1\u200D\U0001F4BB coder",
    "\U0001F600\U0001F601\U0001F602\U0001F923\U0001F60A \u2764\uFE0F \u2728 \U0001F680\U0001F680\U0001F680",
    # combining marks and normalization
    "e\u0301 n\u0303 a\u0308 o\u0302 (decomposed) vs \u00e9 \u00f1 \u00e4 \u00f4 (composed)",
    unicodedata.normalize("NFD", "Tiếng Việt có dấu: Người ta thường nói rằng"),
    unicodedata.normalize("NFD", "한국어 자모 분해"),
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034da\u036b\u0357\u0364l\u0334\u0324\u0345g\u0358\u0317o\u0331\u0320 text",
    "\u212b \u2126 \u00c5 \uFB01 \uFB00 \u1E9B\u0323 \u0041\u030A",
    # numbers
    "1234567890 12 123 1234 12345 3.14159265358979 -42 +7 1,000,000 1_000_000 0x1F 1e10 10^9",
    "\u0663\u0664\u0665 \uFF11\uFF12\uFF13 \u00b2\u00b3 \u2167 \u216B \u0967\u0968\u0969 \u00bd",
    "2024-01-15T10:30:00Z 192.168.0.1 +1 (555) 123-4567 v1.2.3-rc.4",
    # whitespace
    "a    b     c      d",
    "\t\t\tindented\n\n\n\n    spaces    \n   ",
    "trailing spaces   ",
    "   leading spaces",
    "nbsp\u00a0\u00a0x ideographic\u3000\u3000y nel\u0085z lsep\u2028w zwsp\u200bv ff\x0cvt\x0bend",
    " ",
    "\n",
    "",
    "a\u0000b\u0000",
    # CRLF
    "line one\r\nline two\r\n\r\nline four\rlone CR\n\r",
    "  \r\n\t\r\n",
    # special-token text of the tokenizers under test (ordinary text for the others)
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>User: hi<\uff5cend\u2581of\u2581sentence\uff5c> <\uff5ctool\u2581sep\uff5c>",
    "<begin_of_document><beginning_of_sentence>user name=user\nhi<end_of_sentence>\n<end_of_document><pad><image>",
    "<|im_sta <|im_end <end_of_sent <<end_of_sentence>> <|endoftext|><|endoftext|>",
    # private use, noncharacters, unassigned, Unicode 15 additions
    "\ue000\uf8ff \uffff \U0010FFFF \u0378 \U0001FAE8 \U00011F04\U00011F05",
]


def long_words():
    rng = random.Random(1234)
    b64 = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                  for _ in range(3000))
    han = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(3000))
    return [
        "a" * 5000,
        "antidisestablishmentarianism" * 60,
        "Donaudampfschifffahrtselektrizitätenhauptbetriebswerkbauunterbeamtengesellschaft",
        b64,
        "https://example.com/" + "path/" * 200 + "?q=" + "x" * 500,
        han,
        "9" * 2000,
        "!" * 3000,
        " " * 3000 + "x",
        "\n" * 1000,
        "ab" * 2500,
        "\U0001F600" * 800,
    ]


def main():
    chat = json.load(open(os.path.join(ROOT, "tests/data/chat_template/goldens.json"),
                          encoding="utf-8"))
    corpus = SAMPLES + long_words() + [c["rendered"] for c in chat["cases"]]
    out = os.path.join(ROOT, "tests/data/tokenizer/corpus.json")
    with open(out, "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(corpus)} strings, {sum(len(s.encode()) for s in corpus)} bytes -> {out}")


if __name__ == "__main__":
    main()
