#!/usr/bin/env python3
"""test_tokenizer_hf.py: moe's byte-level BPE tokenizers against Hugging Face's
`tokenizers` library on random multilingual text.

For each pre-tokenizer pattern moe implements (pretok.c), a BPE tokenizer is
trained with `tokenizers` using the same regexes (a Sequence of "isolated"
Splits, then ByteLevel without its own regex, as the tokenizer.json files of
those models do), with special and added tokens; its vocabulary and merges are
written as a GGUF file ("gpt2" model, the .pre name) by the small writer
below, loaded with moe_vocab_load, and the ids of moe_vocab_encode
(parse_special = 1) must equal Hugging Face's on text it was not trained on:
letters with accents, Greek, Cyrillic, CJK, kana, Hangul, digit runs,
contractions in both cases, punctuation, emoji, marks, whitespace runs with
tabs, CR and newlines. The decoded text must equal the input.

Prints SKIPPED (with the reason) when `tokenizers` is not installed.
Library: $MOE_LIB (default build/libmoe.so).
"""
import ctypes
import json
import os
import random
import struct
import sys
import tempfile
from ctypes import POINTER, c_char_p, c_int, c_int32, c_size_t, c_void_p

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_ctypes as mc  # noqa: E402
from checks import counts, fail, ok  # noqa: E402

try:
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                            pre_tokenizers, trainers)
except ImportError as e:
    print("SKIPPED tokenizer_hf: the Python package `tokenizers` is not installed (%s)" % e)
    sys.exit(0)

# ------------------------------------------------------------ the patterns

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

# the cased letters of llama.cpp's DeepSeek-LLM pattern (as in pretok.c)
DS_LETTERS = [(0x41, 0x5A), (0x61, 0x7A), (0xB5, 0xB5), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA),
              (0x1BC, 0x1BF), (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376, 0x377),
              (0x37B, 0x37D), (0x37F, 0x37F), (0x386, 0x386), (0x388, 0x38A), (0x38C, 0x38C),
              (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481), (0x48A, 0x52F), (0x531, 0x556),
              (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD), (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF),
              (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0x1E00, 0x1F15), (0x1F18, 0x1F1D),
              (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57), (0x1F59, 0x1F59), (0x1F5B, 0x1F5B),
              (0x1F5D, 0x1F5D), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC), (0x1FBE, 0x1FBE),
              (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB), (0x1FE0, 0x1FEC),
              (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102, 0x2102), (0x2107, 0x2107), (0x210A, 0x2113),
              (0x2115, 0x2115), (0x2119, 0x211D), (0x2124, 0x2124), (0x2126, 0x2126), (0x2128, 0x2128),
              (0x212A, 0x212D), (0x212F, 0x2134), (0x2139, 0x2139), (0x213C, 0x213F), (0x2145, 0x2149),
              (0x214E, 0x214E), (0x2183, 0x2184), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE),
              (0x2CF2, 0x2CF3), (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787),
              (0xA78B, 0xA78E), (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A),
              (0xFF41, 0xFF5A), (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB),
              (0x10C80, 0x10CB2), (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)]


def cls(ranges):
    return "[" + "".join("\\x{%X}-\\x{%X}" % r for r in ranges) + "]"


CJK = cls([(0x4E00, 0x9FA5), (0x800, 0x4E00), (0xAC00, 0xD7FF)])
PATTERNS = {
    "gpt-2": [GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "deepseek-llm": ["[\r\n]", r"\s?" + cls(DS_LETTERS) + "+",
                     r"\s?" + cls([(0x21, 0x2F), (0x3A, 0x7E), (0xFF01, 0xFF0F), (0xFF1A, 0xFF5E),
                                   (0x2018, 0x201F), (0x3000, 0x3002)]) + "+",
                     r"\s+$", CJK + "+", r"\p{N}+"],
    "deepseek-coder": ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", CJK + "+", r"\p{N}"],
    "deepseek-v3": [r"\p{N}{1,3}", cls([(0x4E00, 0x9FA5), (0x3040, 0x309F), (0x30A0, 0x30FF)]) + "+",
                    r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+|"
                    r" ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"],
    "refact": [r"\p{N}", GPT2],
    "default": [r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"],
}
IGNORE_MERGES = {"llama-bpe"}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ADDED = "<tool>"

# ------------------------------------------------------------------- text

ALPHABETS = [
    "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿÀÉÎÕÜß",
    "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΩ", "абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГД",
    "的一是不了人我在有他这为之大来以个中上们", "あいうえおかきくけこさしすせそアイウエオカキク", "가나다라마바사아자차카타파하",
    "Աբգդ", "ﬀﬁﬂ",
]
PUNCT = list(".,;:!?-()[]{}\"'/\\@#$%^&*+=<>|~`_") + ["…", "—", "“", "”", "«", "»", "。", "、", "！", "？", "　"]
SPACES = [" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", " \t ", "\n  ", "\u00a0", "\u3000"]
EXTRA = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'Re", "😀", "🦙🦙", "e\u0301", "n\u0303",
         "٣٤٥", "½", "²", "①"]


def rand_text(rng, n_items):
    out = []
    for _ in range(n_items):
        r = rng.random()
        if r < 0.45:
            a = rng.choice(ALPHABETS)
            out.append("".join(rng.choice(a) for _ in range(rng.randint(1, 9))))
        elif r < 0.6:
            out.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
        elif r < 0.75:
            out.append("".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 3))))
        elif r < 0.82:
            out.append(rng.choice(EXTRA))
        elif r < 0.84:
            out.append(rng.choice(SPECIALS + [ADDED]))
        else:
            out.append(rng.choice(SPACES))
        if rng.random() < 0.5:
            out.append(" ")
    return "".join(out)

# ------------------------------------------------------------ GGUF writer


def gguf_bytes(kvs):
    """A GGUF v3 image with metadata only: kvs is a list of (key, kind, value)
    with kind "str", "u32", "bool", "arr_str" or "arr_i32"."""
    def s(x):
        b = x.encode("utf-8") if isinstance(x, str) else x
        return struct.pack("<Q", len(b)) + b
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)))
    for key, kind, val in kvs:
        out += s(key)
        if kind == "str":
            out += struct.pack("<I", 8) + s(val)
        elif kind == "u32":
            out += struct.pack("<II", 4, val)
        elif kind == "bool":
            out += struct.pack("<IB", 7, 1 if val else 0)
        elif kind == "arr_str":
            out += struct.pack("<IIQ", 9, 8, len(val)) + b"".join(s(x) for x in val)
        elif kind == "arr_i32":
            out += struct.pack("<IIQ", 9, 5, len(val)) + struct.pack("<%di" % len(val), *val)
    out += b"\0" * (-len(out) % 32)
    return bytes(out)

# ---------------------------------------------------------------- library


def load_lib():
    lib = ctypes.CDLL(mc.default_lib_path())
    E = POINTER(mc.MoeError)
    lib.moe_vocab_load.restype = c_int
    lib.moe_vocab_load.argtypes = [POINTER(c_void_p), c_char_p, E]
    lib.moe_vocab_free.restype = None
    lib.moe_vocab_free.argtypes = [c_void_p]
    lib.moe_vocab_encode.restype = c_int
    lib.moe_vocab_encode.argtypes = [c_void_p, c_char_p, c_size_t, c_int, c_int, POINTER(c_int32),
                                     c_size_t, POINTER(c_size_t), E]
    lib.moe_vocab_piece.restype = ctypes.POINTER(ctypes.c_char)
    lib.moe_vocab_piece.argtypes = [c_void_p, c_int, c_int, c_void_p, c_size_t, POINTER(c_size_t)]
    return lib


def moe_encode(lib, v, data):
    cap = len(data) + 8
    out = (c_int32 * cap)()
    n = c_size_t(0)
    err = mc.MoeError()
    st = lib.moe_vocab_encode(v, data, len(data), 0, 1, out, cap, ctypes.byref(n), ctypes.byref(err))
    if st != 0:
        raise RuntimeError(err.msg.decode())
    return list(out[:n.value])


def moe_decode(lib, v, ids):
    parts = []
    n = c_size_t(0)
    for i in ids:
        p = lib.moe_vocab_piece(v, i, 1, None, 0, ctypes.byref(n))
        parts.append(ctypes.string_at(p, n.value))
    return b"".join(parts)

# ------------------------------------------------------------------- main


def build_hf(pre, corpus):
    seq = [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in PATTERNS[pre]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(seq + [pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                              use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(ADDED, special=False, normalized=False)])
    if pre in IGNORE_MERGES:
        j = json.loads(tok.to_str())
        j["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(j))
    return tok


def to_gguf(tok, pre, path):
    j = json.loads(tok.to_str())
    vocab = dict(j["model"]["vocab"])
    types = {}
    for a in j["added_tokens"]:
        vocab[a["content"]] = a["id"]
        types[a["id"]] = 3 if a["special"] else 4
    n = max(vocab.values()) + 1
    tokens = [""] * n
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]
    kvs = [("tokenizer.ggml.model", "str", "gpt2"), ("tokenizer.ggml.pre", "str", pre),
           ("tokenizer.ggml.tokens", "arr_str", tokens),
           ("tokenizer.ggml.token_type", "arr_i32", [types.get(i, 1) for i in range(n)]),
           ("tokenizer.ggml.merges", "arr_str", merges),
           ("tokenizer.ggml.eos_token_id", "u32", vocab["<|endoftext|>"])]
    if pre == "llama-bpe":
        kvs.append(("tokenizer.ggml.add_bos_token", "bool", False))
    with open(path, "wb") as f:
        f.write(gguf_bytes(kvs))
    return len(merges)


def main():
    lib = load_lib()
    rng = random.Random(1234)
    corpus = [rand_text(rng, 60) for _ in range(400)]
    tests = [rand_text(rng, rng.randint(1, 80)) for _ in range(300)]
    tests += ["I'M here'S you'Re 12345678 x", "a\n\nb  c \t\n d   ", "Ωmega Աա ﬁne", "中文abc한국어123",
              "<|im_start|>user\nhi<|im_end|>\n<tool>x", " ", "\n", "", "  \n\n  "]
    tmp = tempfile.mkdtemp(prefix="moe-test-hf-")
    for pre in PATTERNS:
        name = "tokenizer_hf/" + pre
        path = os.path.join(tmp, pre + ".gguf")
        try:
            tok = build_hf(pre, corpus)
            n_merges = to_gguf(tok, pre, path)
        except Exception as e:
            fail(name, "building the reference tokenizer: %s" % e)
            continue
        v = c_void_p()
        err = mc.MoeError()
        if lib.moe_vocab_load(ctypes.byref(v), path.encode(), ctypes.byref(err)) != 0:
            fail(name, "moe_vocab_load: %s" % err.msg.decode())
            continue
        bad = None
        for t in tests:
            want = tok.encode(t, add_special_tokens=False).ids
            got = moe_encode(lib, v, t.encode("utf-8"))
            if got != want:
                bad = "%r: moe %s, tokenizers %s" % (t, got[:24], want[:24])
                break
            if moe_decode(lib, v, got) != t.encode("utf-8"):
                bad = "%r: decodes to %r" % (t, moe_decode(lib, v, got))
                break
        lib.moe_vocab_free(v)
        os.unlink(path)
        if bad:
            fail(name, bad)
        else:
            ok(name, "%d texts, %d merges" % (len(tests), n_merges))
    os.rmdir(tmp)
    checks, failed = counts()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
