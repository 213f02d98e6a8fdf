#!/usr/bin/env python3
"""test_convert_torch.py: `moe convert` (moe_convert_hf) on Hugging Face
model folders, end to end against PyTorch.

For each family (dense llama, mixtral, qwen2_moe, qwen3_moe, olmoe,
deepseek v1, granitemoe) a tiny folder is written here with random weights
under the Hugging Face tensor names (safetensors written by hand: u64 header
length + JSON + raw little-endian data; F32, F16 and BF16 sources; qwen2_moe
in two shards with model.safetensors.index.json), config.json with HF keys,
tokenizer.json (trained here with `tokenizers` when it is installed: a
SentencePiece-style byte-fallback BPE for llama/mixtral, byte-level BPE with
the family's pre-tokenizer for the others, else a tiny hand-made one) and
tokenizer_config.json. The folder is converted (through $MOE_BIN convert,
or moe_convert_hf via ctypes) and the engine's logits (moe_infer_eval) are
compared with an independent float64 PyTorch forward written here from the
Hugging Face modeling code of the family, run on the HF tensors themselves:
so the Q/K row permutation, the expert stacking (granite's packed
input_linear included), the renaming and the keys are all tested at once.
F32 conversions must agree to max|c - ref| / max|ref| <= 1e-4.

Quantized conversions (q8_0, q4_k; widths multiples of 256 except the
expert width of 96, which must fall back to q8_0 and say so; a dense width
of 72 under q4_0, which must fall back to f16): the file's tensors are
dequantized by the library (its F32 "twin") and compared with the HF
weights in GGUF order (q8_0 within half a step per block, q4_k within a
relative RMS error of 0.12; attn_q/attn_k permuted per head); the engine
on the quantized file must match the engine on the twin within 5e-2 (the
same weights: only the 8-bit rounding of the activations differs), and the
engine on the F32 conversion within that plus the weight-rounding effect
measured on the twin (triangle inequality; q8_0 within 5e-2 outright).
See check_quantized for the figures behind each tolerance.

Tokenizers: the converted file's vocabulary (moe_vocab_encode) must give
the same ids as Hugging Face's `tokenizers` on sample text, for both the
"llama" (SentencePiece) and "gpt2" (byte-level, .pre detected from the
regexes) cases; bos/eos and the chat template are carried over.

With `transformers` importable, the same is done on folders written by
transformers' own classes (save_pretrained of MixtralForCausalLM,
Qwen2MoeForCausalLM, OlmoeForCausalLM, GraniteMoeForCausalLM,
LlamaForCausalLM with llama3 rope scaling, Qwen3MoeForCausalLM when the
version has it) against the HF model's own logits; SKIPPED without it.

Bad folders must fail with a message naming the file / tensor / key: no
config.json, an unknown model_type, a truncated safetensors file, a header
whose offsets lie (overlap, past the end), a missing and a misshaped tensor,
an unsupported dtype, no tokenizer.json, an unknown --type; a failed
conversion leaves an existing output file untouched.
"""
import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch_guard

np, torch = torch_guard.import_torch("test_convert_torch")

from ctypes import POINTER, Structure, byref, c_char, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t, c_void_p

import checks
from checks import check, counts, fail, note, ok
import gguf_ref
import moe_ctypes as mc

DT = torch.float64
T = 10  # tokens per test sequence
TOL = 1e-4


def skip(name, why):
    print("SKIPPED %s: %s" % (name, why))
    sys.stdout.flush()


# ================================================================ library
class MoeError(Structure):
    _fields_ = [("msg", c_char * 512)]


InferOptions, InferInfo = mc.InferOptions, mc.InferInfo  # include/moe_infer.h


def load_lib():
    lib = ctypes.CDLL(mc.default_lib_path())
    mc.bind_internal(lib, "synth_dequantize")  # tests/testhooks.c
    if not mc.has(lib, "moe_convert_hf"):
        return None
    E = POINTER(MoeError)
    lib.moe_convert_hf.restype = c_int
    lib.moe_convert_hf.argtypes = [c_char_p, c_char_p, c_char_p, E]
    lib.moe_infer_options_default.restype = None
    lib.moe_infer_options_default.argtypes = [POINTER(InferOptions)]
    lib.moe_infer_open.restype = c_int
    lib.moe_infer_open.argtypes = [POINTER(c_void_p), c_char_p, POINTER(InferOptions), E]
    lib.moe_infer_close.restype = None
    lib.moe_infer_close.argtypes = [c_void_p]
    lib.moe_infer_get_info.restype = POINTER(InferInfo)
    lib.moe_infer_get_info.argtypes = [c_void_p]
    lib.moe_infer_eval.restype = c_int
    lib.moe_infer_eval.argtypes = [c_void_p, POINTER(c_int32), c_int, c_int, POINTER(c_float), c_int, E]
    lib.moe_vocab_load.restype = c_int
    lib.moe_vocab_load.argtypes = [POINTER(c_void_p), c_char_p, E]
    lib.moe_vocab_free.restype = None
    lib.moe_vocab_free.argtypes = [c_void_p]
    lib.moe_vocab_encode.restype = c_int
    lib.moe_vocab_encode.argtypes = [c_void_p, c_char_p, c_size_t, c_int, c_int, POINTER(c_int32),
                                     c_size_t, POINTER(c_size_t), E]
    lib.moe_vocab_bos.restype = c_int
    lib.moe_vocab_bos.argtypes = [c_void_p]
    lib.moe_vocab_eos.restype = c_int
    lib.moe_vocab_eos.argtypes = [c_void_p]
    lib.synth_dequantize.restype = c_int
    lib.synth_dequantize.argtypes = [c_char_p, c_size_t, POINTER(c_void_p), POINTER(c_size_t), E]
    return lib


LIB = None
LIBC = ctypes.CDLL(None)
LIBC.free.argtypes = [c_void_p]
MOE_BIN = os.environ.get("MOE_BIN") or os.path.join(os.path.dirname(HERE), "build", "moe")


def convert(src, out, ty="f32", cli=False):
    """(status, message): 0 and the notes, or the error."""
    if cli and os.access(MOE_BIN, os.X_OK):
        r = subprocess.run([MOE_BIN, "convert", src, out, "--type", ty], capture_output=True, text=True)
        return r.returncode, (r.stderr + r.stdout).strip()
    err = MoeError()
    st = LIB.moe_convert_hf(src.encode(), out.encode(), ty.encode(), byref(err))
    return st, err.msg.decode(errors="replace")


def engine_logits(path, toks, experts_per_token=0):
    o = InferOptions()
    LIB.moe_infer_options_default(byref(o))
    o.ctx_len, o.experts_per_token = 64, experts_per_token
    h = c_void_p()
    err = MoeError()
    st = LIB.moe_infer_open(byref(h), path.encode(), byref(o), byref(err))
    if st != 0:
        raise RuntimeError("moe_infer_open: %s" % err.msg.decode())
    try:
        info = LIB.moe_infer_get_info(h).contents
        V = info.vocab_size
        t = np.ascontiguousarray(toks, dtype=np.int32)
        out = np.full((len(t), V), np.nan, dtype=np.float32)
        st = LIB.moe_infer_eval(h, t.ctypes.data_as(POINTER(c_int32)), len(t), 0,
                                out.ctypes.data_as(POINTER(c_float)), 1, byref(err))
        if st != 0:
            raise RuntimeError("moe_infer_eval: %s" % err.msg.decode())
        return out
    finally:
        LIB.moe_infer_close(h)


def engine_encode(path, text, add_bos=0):
    v = c_void_p()
    err = MoeError()
    if LIB.moe_vocab_load(byref(v), path.encode(), byref(err)) != 0:
        raise RuntimeError("moe_vocab_load: %s" % err.msg.decode())
    try:
        data = text.encode()
        cap = len(data) + 8
        out = (c_int32 * cap)()
        n = c_size_t(0)
        if LIB.moe_vocab_encode(v, data, len(data), add_bos, 0, out, cap, byref(n), byref(err)) != 0:
            raise RuntimeError("moe_vocab_encode: %s" % err.msg.decode())
        return list(out[:n.value]), LIB.moe_vocab_bos(v), LIB.moe_vocab_eos(v)
    finally:
        LIB.moe_vocab_free(v)


def rel_err(c, ref):
    c, ref = np.asarray(c, np.float64), np.asarray(ref, np.float64)
    d = np.abs(c - ref)
    d = np.where(np.isfinite(d), d, np.inf)
    return float(d.max() / max(np.abs(ref).max(), 1e-30))


# ============================================================ safetensors
def to_bytes(a, dtype):
    t = torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32))
    if dtype == "F32":
        return t.numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).numpy().astype("<f2").tobytes()
    return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()


def rounded(a, dtype):
    """The float64 values a tensor stored in dtype holds."""
    t = torch.as_tensor(np.ascontiguousarray(a, dtype=np.float32))
    if dtype == "F16":
        t = t.to(torch.float16)
    elif dtype == "BF16":
        t = t.to(torch.bfloat16)
    return t.to(DT)


def write_safetensors(path, tensors, dtype="F32", meta=None):
    """tensors: {name: np.ndarray}; every tensor stored in dtype."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, a in tensors.items():
        b = to_bytes(a, dtype)
        header[name] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_sharded(folder, tensors, dtype, n_shards=2):
    names = list(tensors)
    wm = {}
    for s in range(n_shards):
        part = names[s::n_shards]
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, n_shards)
        write_safetensors(os.path.join(folder, fn), {n: tensors[n] for n in part}, dtype)
        wm.update({n: fn for n in part})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wm}, f)


# ============================================================= tokenizers
TEXT = ("The quick brown fox jumps over the lazy dog. A mixture of experts routes each token to a "
        "few of its experts, and the router learns which expert is good at what. When the model "
        "reads a sentence, every word is cut into tokens; the tokens become vectors, 12345 of them, "
        "and pass through attention and the experts, layer after layer. ") * 3
SAMPLES = ["The router learns which expert is good.", "hello world  twice   spaces\nnew line",
           "numbers 1234567 and 42, punctuation!? (yes)", "caf\u00e9 na\u00efve \u00fcber",
           "unseen \u4e2d\u6587 and emoji \U0001F600 here", " leading space", "tokens;vectors:experts"]
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"

GPT2_RX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
             r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RX = LLAMA3_RX.replace(r"\p{N}{1,3}", r"\p{N}")

try:
    import tokenizers as hf_tok
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
                            pre_tokenizers, trainers)
except Exception:  # noqa: BLE001
    hf_tok = None


def bytelevel_tokenizer(pre, vocab_size=300):
    """(tokenizer.json text, Tokenizer or None) of a byte-level BPE whose
    pre-tokenizer is `pre`: "gpt-2" (ByteLevel's own regex), "qwen2",
    "llama-bpe", "deepseek-llm", "deepseek-coder" (Splits + ByteLevel
    without regex), "refact" (Digits + ByteLevel)."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    if hf_tok is None:
        return tiny_bytelevel_json(specials), None
    tok = Tokenizer(models.BPE())
    if pre == "gpt-2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif pre == "refact":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        if pre in ("qwen2", "llama-bpe"):
            rxs = [{"qwen2": QWEN2_RX, "llama-bpe": LLAMA3_RX}[pre]]
        else:  # the DeepSeek patterns, as tests/test_tokenizer_hf.py spells them for pretok.c
            import test_tokenizer_hf
            rxs = test_tokenizer_hf.PATTERNS[pre]
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r), behavior="isolated")
                                                     for r in rxs] +
                                                    [pre_tokenizers.ByteLevel(add_prefix_space=False,
                                                                              use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([TEXT], tr)
    if pre == "llama-bpe":
        j = json.loads(tok.to_str())
        j["model"]["ignore_merges"] = True
        tok = Tokenizer.from_str(json.dumps(j))
    return tok.to_str(), tok


def tiny_bytelevel_json(specials):
    """Without `tokenizers`: the 256 byte tokens, a few merges, the specials."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_map = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_map[b]: i for i, b in enumerate(range(256))}
    merges = [("t", "h"), ("th", "e"), ("\u0120", "the"), ("e", "r"), ("o", "u")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    return json.dumps({"version": "1.0", "added_tokens": added, "normalizer": None,
                       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                         "trim_offsets": True, "use_regex": True},
                       "post_processor": None, "decoder": {"type": "ByteLevel"},
                       "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                                 "merges": [a + " " + b for a, b in merges]}})


def spm_tokenizer(metaspace, vocab_size=200):
    """A SentencePiece-style tokenizer.json (as transformers converts a Llama /
    Mistral tokenizer.model): <unk> <s> </s>, the 256 <0xNN> byte tokens,
    pieces with U+2581 for spaces, byte_fallback, and every (a, b) merge
    whose parts and result are pieces, ranked by the result's id (as
    transformers' SentencePieceExtractor writes them). Spaces become U+2581
    by the normalizer (Prepend + Replace, the current format) or, with
    metaspace, by a Metaspace pre-tokenizer (the older one). Needs
    `tokenizers` (None without)."""
    if hf_tok is None:
        return None, None
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>"],
                             show_progress=False)
    tok.train_from_iterator([TEXT], tr)
    j = json.loads(tok.to_str())
    old = sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1])
    pieces = [p for p, _ in old if p not in ("<unk>", "<s>", "</s>")]
    toks = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)] + pieces
    vocab = {t: i for i, t in enumerate(toks)}
    merges = []
    for t in pieces:
        for cut in range(1, len(t)):
            a, b = t[:cut], t[cut:]
            if a in vocab and b in vocab:
                merges.append((vocab[t], vocab[a], vocab[b], a, b))
    merges.sort()
    j["model"] = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
                  "vocab": vocab, "merges": [m[3] + " " + m[4] for m in merges]}
    j["added_tokens"] = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, s in enumerate(["<unk>", "<s>", "</s>"])]
    j["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                    {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
    if not metaspace:
        j["pre_tokenizer"] = None
        j["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    s = json.dumps(j)
    return s, Tokenizer.from_str(s)


# ================================================================= models
class Fam:
    """A tiny model of one family: HF config, tensors and the reference."""

    def __init__(self, kind, seed, d=64, H=4, Hkv=2, hd=16, L=2, E=4, k=2, ff=32, ff_dense=96,
                 ff_shared=64, V=320, tok="gpt-2", dtype="F32"):
        self.kind, self.d, self.H, self.Hkv, self.hd, self.L = kind, d, H, Hkv, hd, L
        self.E, self.k, self.ff, self.ff_dense, self.ff_shared, self.V = E, k, ff, ff_dense, ff_shared, V
        self.tok, self.dtype = tok, dtype
        self.eps, self.theta = 1e-5, 10000.0
        self.tied = kind in ("qwen3_moe", "granitemoe")
        self.norm_topk = kind in ("mixtral", "qwen3_moe", "granitemoe")
        self.n_dense = 1 if kind == "deepseek" else 0
        self.n_shared = 2 if kind == "deepseek" else 0
        self.bias = kind in ("qwen2_moe", "llama")  # llama: attention_bias = true
        self.gr = dict(emb=12.0, res=0.22, attn=0.15, logit=8.0)
        self.rng = np.random.default_rng(seed)
        self.w = {}
        self._make()

    # -- weights
    def _n(self, shape, scale):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    def _mat(self, name, rows, cols):
        self.w[name] = self._n((rows, cols), 1.0 / np.sqrt(cols))

    def _vec(self, name, n, norm=True):
        self.w[name] = (1.0 + self._n((n,), 0.2)) if norm else self._n((n,), 0.2)

    def _make(self):
        d, q, kv = self.d, self.H * self.hd, self.Hkv * self.hd
        self.w["model.embed_tokens.weight"] = self._n((self.V, d), 1.0)
        for l in range(self.L):
            p = "model.layers.%d." % l
            self._vec(p + "input_layernorm.weight", d)
            self._vec(p + "post_attention_layernorm.weight", d)
            self._mat(p + "self_attn.q_proj.weight", q, d)
            self._mat(p + "self_attn.k_proj.weight", kv, d)
            self._mat(p + "self_attn.v_proj.weight", kv, d)
            self._mat(p + "self_attn.o_proj.weight", d, q)
            if self.bias:
                for x, n in (("q", q), ("k", kv), ("v", kv)):
                    self._vec(p + "self_attn.%s_proj.bias" % x, n, norm=False)
                if self.kind == "llama":
                    self._vec(p + "self_attn.o_proj.bias", d, norm=False)
            if self.kind == "qwen3_moe":
                self._vec(p + "self_attn.q_norm.weight", self.hd)
                self._vec(p + "self_attn.k_norm.weight", self.hd)
            if self.kind == "olmoe":
                self._vec(p + "self_attn.q_norm.weight", q)
                self._vec(p + "self_attn.k_norm.weight", kv)
            if self.kind == "llama" or l < self.n_dense:
                f = self.ff_dense
                self._mat(p + "mlp.gate_proj.weight", f, d)
                self._mat(p + "mlp.up_proj.weight", f, d)
                self._mat(p + "mlp.down_proj.weight", d, f)
                continue
            E, f = self.E, self.ff
            router = self._n((E, d), 2.0 / np.sqrt(d))
            if self.kind == "granitemoe":
                self.w[p + "block_sparse_moe.router.layer.weight"] = router
                self.w[p + "block_sparse_moe.input_linear.weight"] = self._n((E, 2 * f, d), 1 / np.sqrt(d))
                self.w[p + "block_sparse_moe.output_linear.weight"] = self._n((E, d, f), 1 / np.sqrt(f))
                continue
            if self.kind == "mixtral":
                self.w[p + "block_sparse_moe.gate.weight"] = router
                for e in range(E):
                    b = p + "block_sparse_moe.experts.%d." % e
                    self._mat(b + "w1.weight", f, d)
                    self._mat(b + "w3.weight", f, d)
                    self._mat(b + "w2.weight", d, f)
                continue
            self.w[p + "mlp.gate.weight"] = router
            for e in range(E):
                b = p + "mlp.experts.%d." % e
                self._mat(b + "gate_proj.weight", f, d)
                self._mat(b + "up_proj.weight", f, d)
                self._mat(b + "down_proj.weight", d, f)
            if self.kind in ("qwen2_moe", "deepseek"):
                fs = self.ff_shared if self.kind == "qwen2_moe" else self.n_shared * f
                b = p + ("mlp.shared_expert." if self.kind == "qwen2_moe" else "mlp.shared_experts.")
                self._mat(b + "gate_proj.weight", fs, d)
                self._mat(b + "up_proj.weight", fs, d)
                self._mat(b + "down_proj.weight", d, fs)
                if self.kind == "qwen2_moe":
                    self.w[p + "mlp.shared_expert_gate.weight"] = self._n((1, d), 1 / np.sqrt(d))
        self._vec("model.norm.weight", d)
        if not self.tied:
            self._mat("lm_head.weight", self.V, d)

    def config(self):
        c = {"model_type": self.kind, "architectures": ["X"], "vocab_size": self.V,
             "hidden_size": self.d, "num_hidden_layers": self.L, "num_attention_heads": self.H,
             "num_key_value_heads": self.Hkv, "rms_norm_eps": self.eps, "rope_theta": self.theta,
             "max_position_embeddings": 256, "tie_word_embeddings": self.tied, "hidden_act": "silu",
             "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
        if self.hd != self.d // self.H:
            c["head_dim"] = self.hd
        k = self.kind
        if k == "llama":
            c.update(intermediate_size=self.ff_dense, attention_bias=True)
        elif k in ("mixtral", "granitemoe"):
            c.update(intermediate_size=self.ff, num_local_experts=self.E, num_experts_per_tok=self.k)
            if k == "granitemoe":
                c.update(embedding_multiplier=self.gr["emb"], residual_multiplier=self.gr["res"],
                         attention_multiplier=self.gr["attn"], logits_scaling=self.gr["logit"])
        elif k in ("qwen2_moe", "qwen3_moe"):
            c.update(num_experts=self.E, num_experts_per_tok=self.k, moe_intermediate_size=self.ff,
                     intermediate_size=self.ff_dense, norm_topk_prob=self.norm_topk,
                     decoder_sparse_step=1, mlp_only_layers=[])
            if k == "qwen2_moe":
                c["shared_expert_intermediate_size"] = self.ff_shared
        elif k == "olmoe":
            c.update(num_experts=self.E, num_experts_per_tok=self.k, intermediate_size=self.ff,
                     norm_topk_prob=False, clip_qkv=None)
        elif k == "deepseek":
            c.update(n_routed_experts=self.E, num_experts_per_tok=self.k, moe_intermediate_size=self.ff,
                     intermediate_size=self.ff_dense, n_shared_experts=self.n_shared,
                     first_k_dense_replace=self.n_dense, moe_layer_freq=1, norm_topk_prob=False,
                     scoring_func="softmax")
        return c

    def write(self, folder, tok_json, sharded=False):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(self.config(), f, indent=1)
        if sharded:
            write_sharded(folder, self.w, self.dtype)
        else:
            write_safetensors(os.path.join(folder, "model.safetensors"), self.w, self.dtype,
                              meta={"format": "pt"})
        if tok_json is not None:
            with open(os.path.join(folder, "tokenizer.json"), "w") as f:
                f.write(tok_json)
        spm = self.tok.startswith("spm")
        tc = {"bos_token": "<s>" if spm else "<|im_start|>", "eos_token": "</s>" if spm else "<|im_end|>",
              "add_bos_token": spm, "add_eos_token": False, "chat_template": CHAT_TEMPLATE}
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(tc, f)

    # -- the reference forward (float64), from the HF modeling code
    def W(self, name):
        return rounded(self.w[name], self.dtype)

    def forward(self, toks):
        d, H, Hkv, hd, eps = self.d, self.H, self.Hkv, self.hd, self.eps
        kind, gr = self.kind, self.gr
        rms = lambda x, w: x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w  # noqa: E731
        silu = lambda x: x * torch.sigmoid(x)  # noqa: E731
        n = len(toks)
        x = self.W("model.embed_tokens.weight")[torch.as_tensor(toks)]
        if kind == "granitemoe":
            x = x * gr["emb"]
        res = gr["res"] if kind == "granitemoe" else 1.0
        inv = 1.0 / (self.theta ** (torch.arange(0, hd, 2, dtype=DT) / hd))
        ang = torch.arange(n, dtype=DT)[:, None] * inv[None, :]
        cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

        def rope(t):  # [n, heads, hd], rotate_half
            t1, t2 = t[..., :hd // 2], t[..., hd // 2:]
            return t * cos[:, None, :] + torch.cat([-t2, t1], -1) * sin[:, None, :]

        scale = gr["attn"] if kind == "granitemoe" else 1.0 / np.sqrt(hd)
        mask = torch.triu(torch.full((n, n), float("-inf"), dtype=DT), 1)
        for l in range(self.L):
            p = "model.layers.%d." % l
            g = lambda s: self.W(p + s)  # noqa: E731
            h = rms(x, g("input_layernorm.weight"))
            q, k, v = h @ g("self_attn.q_proj.weight").T, h @ g("self_attn.k_proj.weight").T, h @ g("self_attn.v_proj.weight").T
            if self.bias:
                q, k, v = q + g("self_attn.q_proj.bias"), k + g("self_attn.k_proj.bias"), v + g("self_attn.v_proj.bias")
            if kind == "olmoe":
                q, k = rms(q, g("self_attn.q_norm.weight")), rms(k, g("self_attn.k_norm.weight"))
            q, k, v = q.view(n, H, hd), k.view(n, Hkv, hd), v.view(n, Hkv, hd)
            if kind == "qwen3_moe":
                q, k = rms(q, g("self_attn.q_norm.weight")), rms(k, g("self_attn.k_norm.weight"))
            q, k = rope(q), rope(k)
            rep = H // Hkv
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.einsum("qhd,khd->hqk", q, k) * scale + mask
            o = torch.einsum("hqk,khd->qhd", torch.softmax(att, -1), v).reshape(n, H * hd)
            o = o @ g("self_attn.o_proj.weight").T
            if kind == "llama" and self.bias:
                o = o + g("self_attn.o_proj.bias")
            x = x + o * res
            h = rms(x, g("post_attention_layernorm.weight"))
            mlp = lambda h, pre: (silu(h @ g(pre + "gate_proj.weight").T) * (h @ g(pre + "up_proj.weight").T)) @ g(pre + "down_proj.weight").T  # noqa: E731,E501
            if kind == "llama" or l < self.n_dense:
                x = x + mlp(h, "mlp.") * res
                continue
            E, f = self.E, self.ff
            if kind == "granitemoe":
                logits = h @ g("block_sparse_moe.router.layer.weight").T
                tl, ti = torch.topk(logits, self.k, -1)
                tw = torch.softmax(tl, -1)
                win, wout = g("block_sparse_moe.input_linear.weight"), g("block_sparse_moe.output_linear.weight")
                experts = [lambda h, e=e: (silu(h @ win[e, :f].T) * (h @ win[e, f:].T)) @ wout[e].T
                           for e in range(E)]
            else:
                rn = "block_sparse_moe.gate.weight" if kind == "mixtral" else "mlp.gate.weight"
                probs = torch.softmax(h @ g(rn).T, -1)
                tw, ti = torch.topk(probs, self.k, -1)
                if self.norm_topk:
                    tw = tw / tw.sum(-1, keepdim=True)
                if kind == "mixtral":
                    experts = [lambda h, e=e: (silu(h @ g("block_sparse_moe.experts.%d.w1.weight" % e).T)
                                               * (h @ g("block_sparse_moe.experts.%d.w3.weight" % e).T))
                               @ g("block_sparse_moe.experts.%d.w2.weight" % e).T for e in range(E)]
                else:
                    experts = [lambda h, e=e: mlp(h, "mlp.experts.%d." % e) for e in range(E)]
            y = torch.zeros_like(x)
            for t in range(n):
                for j in range(self.k):
                    y[t] += tw[t, j] * experts[int(ti[t, j])](h[t:t + 1])[0]
            if kind == "qwen2_moe":
                y = y + torch.sigmoid(h @ g("mlp.shared_expert_gate.weight").T) * mlp(h, "mlp.shared_expert.")
            if kind == "deepseek":
                y = y + mlp(h, "mlp.shared_experts.")
            x = x + y * res
        x = rms(x, self.W("model.norm.weight"))
        out = x @ (self.W("model.embed_tokens.weight") if self.tied else self.W("lm_head.weight")).T
        return out / gr["logit"] if kind == "granitemoe" else out


FAMILIES = {  # kind: (constructor args, tokenizer)
    "llama": dict(tok="spm", dtype="BF16", V=512, E=0),
    "mixtral": dict(tok="spm-metaspace", dtype="F16", V=512),
    "qwen2_moe": dict(tok="qwen2"),
    "qwen3_moe": dict(tok="qwen2", hd=32),
    "olmoe": dict(tok="gpt-2", Hkv=4, k=3),
    "deepseek": dict(tok="deepseek-llm", L=3),
    "granitemoe": dict(tok="refact"),
}
ARCH_OF = {"llama": "llama", "mixtral": "llama", "qwen2_moe": "qwen2moe", "qwen3_moe": "qwen3moe",
           "olmoe": "olmoe", "deepseek": "deepseek", "granitemoe": "granitemoe"}

_TOK_CACHE = {}


def tokenizer_for(kind_tok):
    if kind_tok not in _TOK_CACHE:
        if kind_tok.startswith("spm"):
            _TOK_CACHE[kind_tok] = spm_tokenizer(kind_tok == "spm-metaspace")
        else:
            _TOK_CACHE[kind_tok] = bytelevel_tokenizer(kind_tok)
    return _TOK_CACHE[kind_tok]


# ================================================================= checks
def check_family(kind, tmp, rng):
    args = dict(FAMILIES[kind])
    fam = Fam(kind, seed=100 + len(kind), **args)
    tj, tok = tokenizer_for(fam.tok)
    if tj is None:  # spm without `tokenizers`: a byte-level one keeps the model test
        tj, tok = bytelevel_tokenizer("gpt-2")
    folder = os.path.join(tmp, kind)
    fam.write(folder, tj, sharded=kind == "qwen2_moe")
    out = os.path.join(tmp, kind + ".gguf")
    name = "convert/%s/f32" % kind
    st, msg = convert(folder, out, "f32", cli=kind in ("mixtral", "olmoe"))
    if st != 0:
        fail(name, "conversion failed (%d): %s" % (st, msg))
        return
    g = gguf_ref.GGUF(out)
    arch = g.kv.get("general.architecture")
    if not check(name + "/arch", arch == ARCH_OF[kind], "general.architecture = %r" % arch):
        return
    toks = rng.integers(0, fam.V, size=T)
    want = fam.forward(toks).numpy()
    try:
        got = engine_logits(out, toks)
    except RuntimeError as e:
        fail(name, str(e))
        return
    checks.check_close(name, "logits", got, want, TOL)
    # the file's layout: norms / routers F32, matrices F32 here, keys
    bad = [n for n, t in g.tensors.items() if t.type != gguf_ref.F32]
    check(name + "/types", not bad, "non-F32 tensors in an f32 conversion: %s" % bad[:3])
    P = arch + "."
    if fam.E:
        check(name + "/experts", g.kv.get(P + "expert_count") == fam.E and
              g.kv.get(P + "expert_used_count") == fam.k and
              list(g.tensors["blk.%d.ffn_gate_exps.weight" % fam.n_dense].ne[:3]) == [fam.d, fam.ff, fam.E],
              "expert keys / ffn_gate_exps shape wrong")
    if kind in ("qwen2_moe", "qwen3_moe", "olmoe", "deepseek"):
        check(name + "/norm_w", g.kv.get(P + "expert_weights_norm") == fam.norm_topk,
              "expert_weights_norm = %r, config norm_topk_prob = %r" % (g.kv.get(P + "expert_weights_norm"), fam.norm_topk))
    check(name + "/tied", ("output.weight" in g.tensors) == (not fam.tied), "output.weight presence wrong")
    check_tokenizer(name, out, g, fam, tok)


def check_tokenizer(name, path, g, fam, tok):
    model = g.kv.get("tokenizer.ggml.model")
    spm = fam.tok.startswith("spm")
    want_model = "llama" if spm and tok is not None else "gpt2"
    check(name + "/tok_model", model == want_model, "tokenizer.ggml.model = %r, expected %r" % (model, want_model))
    if want_model == "gpt2" and hf_tok is not None:
        pre = g.kv.get("tokenizer.ggml.pre")
        check(name + "/tok_pre", pre == fam.tok, "tokenizer.ggml.pre = %r, expected %r" % (pre, fam.tok))
    check(name + "/chat_template", g.kv.get("tokenizer.chat_template") == CHAT_TEMPLATE,
          "tokenizer.chat_template not copied")
    if len(g.kv["tokenizer.ggml.tokens"]) != fam.V:
        fail(name + "/tok_pad", "%d tokens, %d embedding rows" % (len(g.kv["tokenizer.ggml.tokens"]), fam.V))
    if tok is None:
        skip(name + "/tok_ids", "the Python package `tokenizers` is not installed")
        return
    if want_model == "llama":
        check(name + "/tok_space_prefix", g.kv.get("tokenizer.ggml.add_space_prefix") is True,
              "add_space_prefix = %r" % g.kv.get("tokenizer.ggml.add_space_prefix"))
    bad = []
    for s in SAMPLES:
        if fam.tok == "spm-metaspace" and s.startswith(" "):
            continue  # tokenizers' Metaspace adds no U+2581 before a leading space; SentencePiece does
        ids, bos, eos = engine_encode(path, s)
        ref = tok.encode(s, add_special_tokens=False).ids
        if ids != ref:
            bad.append("%r: moe %s, HF %s" % (s, ids[:12], ref[:12]))
    vocab = tok.get_vocab()
    want_bos = vocab["<s>" if spm else "<|im_start|>"]
    want_eos = vocab["</s>" if spm else "<|im_end|>"]
    check(name + "/tok_ids", not bad, "; ".join(bad[:2]), "sample texts")
    check(name + "/tok_bos_eos", (bos, eos) == (want_bos, want_eos),
          "bos/eos %d/%d, expected %d/%d" % (bos, eos, want_bos, want_eos))
    if spm:
        ids, _, _ = engine_encode(path, "hello", add_bos=1)
        check(name + "/tok_add_bos", ids[:1] == [want_bos], "add_bos did not prepend <s>: %s" % ids[:3])


def check_tokenizer_variants(tmp):
    """The pre-tokenizers no family above uses, on one small model."""
    if hf_tok is None:
        skip("convert/tokenizers", "the Python package `tokenizers` is not installed")
        return
    for pre in ("llama-bpe", "deepseek-coder"):
        fam = Fam("olmoe", seed=9, Hkv=4, tok=pre)
        tj, tok = tokenizer_for(pre)
        folder = os.path.join(tmp, "tok_" + pre)
        fam.write(folder, tj)
        out = folder + ".gguf"
        st, msg = convert(folder, out, "q8_0")
        if st != 0:
            fail("convert/tokenizer/%s" % pre, "conversion failed (%d): %s" % (st, msg))
            continue
        check_tokenizer("convert/tokenizer/%s" % pre, out, gguf_ref.GGUF(out), fam, tok)


def permuted(w, n_head):
    """llama.cpp's permutation of HF q/k rows for the adjacent-pair RoPE."""
    r, c = w.shape
    return w.reshape(n_head, 2, r // n_head // 2, c).swapaxes(1, 2).reshape(r, c)


def dequantized_twin(path, out):
    """The file with every non-F32 tensor stored as its dequantized F32
    values (synth_dequantize of the library), written to out."""
    data = open(path, "rb").read()
    buf, n, err = c_void_p(), c_size_t(0), MoeError()
    st = LIB.synth_dequantize(data, len(data), byref(buf), byref(n), byref(err))
    if st != 0:
        raise RuntimeError("synth_dequantize: %s" % err.msg.decode())
    with open(out, "wb") as f:
        f.write(ctypes.string_at(buf, n.value))
    LIBC.free(buf)
    return out


def hf_matrix(fam, gguf_name):
    """The HF weights a GGUF matrix holds, in the GGUF row order."""
    l, rest = int(gguf_name.split(".")[1]), gguf_name.split(".", 2)[2]
    p = "model.layers.%d." % l
    perm = fam.kind in ("llama", "mixtral", "deepseek", "granitemoe")
    if rest == "attn_q.weight":
        w = fam.w[p + "self_attn.q_proj.weight"]
        return permuted(w, fam.H) if perm else w
    if rest == "attn_k.weight":
        w = fam.w[p + "self_attn.k_proj.weight"]
        return permuted(w, fam.Hkv) if perm else w
    if rest == "attn_v.weight":
        return fam.w[p + "self_attn.v_proj.weight"]
    hf = {"ffn_gate_exps.weight": ("w1", "gate_proj"), "ffn_up_exps.weight": ("w3", "up_proj"),
          "ffn_down_exps.weight": ("w2", "down_proj")}[rest]
    if fam.kind == "mixtral":
        return np.stack([fam.w[p + "block_sparse_moe.experts.%d.%s.weight" % (e, hf[0])] for e in range(fam.E)])
    return np.stack([fam.w[p + "mlp.experts.%d.%s.weight" % (e, hf[1])] for e in range(fam.E)])


CHECKED = ["blk.0.attn_q.weight", "blk.1.attn_k.weight", "blk.0.attn_v.weight", "blk.1.ffn_up_exps.weight",
           "blk.0.ffn_down_exps.weight"]


def check_quantized(tmp, rng):
    """q8_0 / q4_k conversions. What each check rests on:
    - the weights: the file's tensors dequantized (its F32 twin) against the
      HF weights in GGUF order (attn_q/attn_k permuted per head): q8_0 within
      half a step (block amax/127) plus the fp16 rounding of the scale; q4_k
      with a relative RMS error <= 0.12 (4-bit steps of about range/15 over
      32 Gaussian weights give ~0.08; the 6-bit scales and mins a little more);
    - the engine on the quantized file against the engine on its F32 twin:
      the same weights, so only the 8-bit rounding of the activations of
      quantized products differs: <= 5e-2 (normalised by max|logit|;
      tests/test_infer_torch.py measures 2-4e-2 for that rounding);
    - against the engine on the F32 conversion: by the triangle inequality
      within (twin vs F32 conversion: the pure weight-rounding effect) +
      5e-2; for q8_0 that effect is small, so also <= 5e-2 outright."""
    for kind in ("mixtral", "qwen2_moe"):
        fam = Fam(kind, seed=7, d=256, H=4, Hkv=2, hd=64, ff=96, ff_shared=256, V=320, tok="gpt-2")
        tj, _ = tokenizer_for("gpt-2")
        folder = os.path.join(tmp, "q_" + kind)
        fam.write(folder, tj)
        f32 = os.path.join(tmp, "q_%s_f32.gguf" % kind)
        st, msg = convert(folder, f32, "f32")
        if st != 0:
            fail("convert/%s/quant" % kind, "f32 conversion failed: %s" % msg)
            continue
        toks = rng.integers(0, fam.V, size=T)
        ref = engine_logits(f32, toks)
        checks.check_close("convert/%s/f32_big" % kind, "logits", ref, fam.forward(toks).numpy(), TOL)
        for ty in ("q8_0", "q4_k"):
            name = "convert/%s/%s" % (kind, ty)
            out = os.path.join(tmp, "q_%s_%s.gguf" % (kind, ty))
            st, msg = convert(folder, out, ty, cli=ty == "q4_k")
            if st != 0:
                fail(name, "conversion failed (%d): %s" % (st, msg))
                continue
            g = gguf_ref.GGUF(out)
            want_t = gguf_ref.Q8_0 if ty == "q8_0" else gguf_ref.Q4_K
            types = {n: t.type for n, t in g.tensors.items()}
            exp = {"blk.0.attn_q.weight": want_t, "blk.0.ffn_gate_exps.weight": want_t,
                   "blk.0.ffn_down_exps.weight": gguf_ref.Q8_0,  # rows of 96: no 256-blocks
                   "blk.0.attn_norm.weight": gguf_ref.F32, "blk.0.ffn_gate_inp.weight": gguf_ref.F32,
                   "token_embd.weight": want_t, "output.weight": want_t}
            wrong = ["%s %s" % (n, gguf_ref.TYPE_NAMES.get(types.get(n), types.get(n))) for n, t in exp.items()
                     if types.get(n) != t]
            check(name + "/types", not wrong, "types: %s" % wrong)
            if ty == "q4_k":
                check(name + "/fallback_note", "q8_0" in msg and "ffn_down" in msg,
                      "no note about the q8_0 fallback: %r" % msg)
            twin = dequantized_twin(out, out + ".twin")
            tg = gguf_ref.GGUF(twin)
            worst_step, worst_rms, where_s, where_r = 0.0, 0.0, "", ""
            for gn in CHECKED:
                hf = hf_matrix(fam, gn)
                q = tg.get(gn).reshape(hf.shape).astype(np.float64)
                if types[gn] == gguf_ref.Q8_0:
                    blocks = hf.reshape(-1, 32)
                    step = np.abs(blocks).max(1, keepdims=True) / 127.0
                    e = float((np.abs(q.reshape(-1, 32) - blocks) / np.maximum(step, 1e-30)).max())
                    if e > worst_step:
                        worst_step, where_s = e, gn
                else:
                    e = float(np.sqrt(((q - hf) ** 2).mean() / (hf.astype(np.float64) ** 2).mean()))
                    if e > worst_rms:
                        worst_rms, where_r = e, gn
            check(name + "/weights", worst_step <= 0.5 + 127 * 2 ** -11 + 1e-3 and worst_rms <= 0.12,
                  "%.3f q8_0 steps (%s) / relative RMS %.3f (%s) from the HF weights (misplaced or "
                  "not permuted?)" % (worst_step, where_s, worst_rms, where_r or "-"),
                  "q8_0 within %.3f of a step, q4_K relative RMS %.3f" % (worst_step, worst_rms))
            got = engine_logits(out, toks)
            tw = engine_logits(twin, toks)
            e_act, e_w, e = rel_err(got, tw), rel_err(tw, ref), rel_err(got, ref)
            check(name + "/vs_twin", e_act <= 5e-2, "engine on the file vs on its F32 twin: %.3e > 5e-2" % e_act,
                  "err %.1e" % e_act)
            bound = 5e-2 if ty == "q8_0" else e_w + 5e-2
            top = float((got.argmax(-1) == ref.argmax(-1)).mean())
            check(name + "/vs_f32", e <= bound,
                  "logits differ from the F32 conversion by %.3e > %.3e" % (e, bound),
                  "err %.1e <= %.1e (weight rounding alone %.1e), top-1 agreement %.0f%%"
                  % (e, bound, e_w, 100 * top))


def check_f16_fallback(tmp, rng):
    """A dense width of 72 (not a multiple of 32): q4_0 falls back to f16
    for ffn_down (rows of 72), says so, and the engine runs the file."""
    fam = Fam("llama", seed=13, E=0, ff_dense=72, tok="gpt-2")
    tj, _ = tokenizer_for("gpt-2")
    folder = os.path.join(tmp, "fb_llama")
    fam.write(folder, tj)
    out = folder + ".gguf"
    name = "convert/llama/q4_0_f16_fallback"
    st, msg = convert(folder, out, "q4_0")
    if st != 0:
        fail(name, "conversion failed (%d): %s" % (st, msg))
        return
    g = gguf_ref.GGUF(out)
    t_down, t_up = g.tensors["blk.0.ffn_down.weight"].type, g.tensors["blk.0.ffn_up.weight"].type
    toks = rng.integers(0, fam.V, size=T)
    # against the engine on the file's F32 twin: only the 8-bit activations differ
    e = rel_err(engine_logits(out, toks), engine_logits(dequantized_twin(out, out + ".twin"), toks))
    check(name, t_down == gguf_ref.F16 and t_up == gguf_ref.Q4_0 and "f16" in msg and "ffn_down" in msg
          and e <= 5e-2, "ffn_down %s, ffn_up %s, note %r, logits vs the F32 twin %.2e"
          % (gguf_ref.TYPE_NAMES.get(t_down), gguf_ref.TYPE_NAMES.get(t_up), msg, e),
          "err %.1e vs the F32 twin" % e)


# ============================================================ transformers
def check_transformers(tmp, rng):
    try:
        import warnings
        warnings.filterwarnings("ignore")
        import transformers as tf
        tf.logging.set_verbosity_error()
    except Exception as e:  # noqa: BLE001
        skip("convert/transformers", "transformers not importable (%s: %s)" % (type(e).__name__, e))
        return
    torch.manual_seed(3)
    common = dict(vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6)
    cases = [
        ("Mixtral", lambda: tf.MixtralForCausalLM(tf.MixtralConfig(intermediate_size=32, num_local_experts=4,
                                                                   num_experts_per_tok=2, rope_theta=1e6, **common))),
        ("Qwen2Moe", lambda: tf.Qwen2MoeForCausalLM(tf.Qwen2MoeConfig(
            intermediate_size=96, moe_intermediate_size=32, shared_expert_intermediate_size=64, num_experts=4,
            num_experts_per_tok=2, norm_topk_prob=False, **common))),
        ("Olmoe", lambda: tf.OlmoeForCausalLM(tf.OlmoeConfig(intermediate_size=32, num_experts=4,
                                                             num_experts_per_tok=2,
                                                             **dict(common, num_key_value_heads=4)))),
        ("GraniteMoe", lambda: tf.GraniteMoeForCausalLM(tf.GraniteMoeConfig(
            intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, embedding_multiplier=6.0,
            residual_multiplier=0.3, attention_multiplier=0.2, logits_scaling=4.0, tie_word_embeddings=True,
            **common))),
        ("Llama+llama3rope", lambda: tf.LlamaForCausalLM(tf.LlamaConfig(
            intermediate_size=96, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            **common))),
        ("Qwen3Moe", lambda: tf.Qwen3MoeForCausalLM(tf.Qwen3MoeConfig(
            intermediate_size=96, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
            norm_topk_prob=True, head_dim=32, **common))),
    ]
    tj, _ = tokenizer_for("gpt-2")
    for label, make in cases:
        name = "convert/transformers/%s" % label
        cls = label.split("+")[0] + "ForCausalLM"
        if not hasattr(tf, cls):
            note("%s: transformers %s has no %s" % (name, tf.__version__, cls))
            continue
        try:
            model = make()
        except Exception as e:  # noqa: BLE001
            skip(name, "%s: %s" % (type(e).__name__, e))
            continue
        with torch.no_grad():  # weights of a useful scale (the HF init is std 0.02)
            for pn, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, (4.0 if "gate" in pn and "proj" not in pn else 1.0) / np.sqrt(p.shape[-1]))
                elif "norm" in pn:
                    p.copy_(1.0 + 0.2 * torch.randn_like(p))
                else:
                    p.normal_(0.0, 0.2)
        folder = os.path.join(tmp, "tf_" + label)
        model.save_pretrained(folder, safe_serialization=True)
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            f.write(tj)
        out = folder + ".gguf"
        st, msg = convert(folder, out, "f32")
        if st != 0:
            fail(name, "conversion failed (%d): %s" % (st, msg))
            continue
        toks = rng.integers(0, 320, size=T)
        model = model.double().eval()
        with torch.no_grad():
            want = model(torch.as_tensor(toks)[None, :]).logits[0].numpy()
        try:
            got = engine_logits(out, toks)
        except RuntimeError as e:
            fail(name, str(e))
            continue
        # transformers keeps RMSNorm and the RoPE angles in float32: ~1e-7 at best
        checks.check_close(name, "logits", got, want, TOL)


# ================================================================= errors
def check_errors(tmp):
    base = Fam("mixtral", seed=5, tok="gpt-2")
    tj, _ = tokenizer_for("gpt-2")
    good = os.path.join(tmp, "err_good")
    base.write(good, tj)
    out = os.path.join(tmp, "err.gguf")
    with open(out, "wb") as f:
        f.write(b"old content")

    def variant(tag, edit):
        d = os.path.join(tmp, "err_" + tag)
        shutil.copytree(good, d)
        edit(d)
        return d

    def expect(tag, d, *words, ty="f32", status=None):
        name = "convert/errors/%s" % tag
        st, msg = convert(d, out, ty)
        if st == 0:
            fail(name, "conversion succeeded")
            return
        miss = [w for w in words if w not in msg]
        with open(out, "rb") as f:
            kept = f.read() == b"old content"
        check(name, not miss and kept and (status is None or st == status),
              "status %d, message %r lacks %s%s" % (st, msg, miss, "" if kept else "; the old output was overwritten"),
              msg[:110])

    def rm(path):
        return lambda d: os.remove(os.path.join(d, path))

    def edit_config(**kv):
        def f(d):
            p = os.path.join(d, "config.json")
            c = json.load(open(p))
            c.update(kv)
            json.dump(c, open(p, "w"))
        return f

    st_path = lambda d: os.path.join(d, "model.safetensors")  # noqa: E731

    def truncate(d):
        p = st_path(d)
        data = open(p, "rb").read()
        open(p, "wb").write(data[:len(data) - 1000])

    def header_edit(fn):
        def f(d):
            p = st_path(d)
            data = open(p, "rb").read()
            n = struct.unpack("<Q", data[:8])[0]
            h = json.loads(data[8:8 + n])
            fn(h)
            hb = json.dumps(h).encode()
            open(p, "wb").write(struct.pack("<Q", len(hb)) + hb + data[8 + n:])
        return f

    def overlap(h):
        a, b = h["model.layers.0.self_attn.q_proj.weight"], h["model.layers.0.self_attn.k_proj.weight"]
        size = b["data_offsets"][1] - b["data_offsets"][0]
        b["data_offsets"] = [a["data_offsets"][0], a["data_offsets"][0] + size]

    def past_end(h):
        t = h["model.norm.weight"]
        t["data_offsets"] = [t["data_offsets"][0] + 10 ** 9, t["data_offsets"][1] + 10 ** 9]

    def drop(name):
        def f(d):
            w = dict(base.w)
            del w[name]
            write_safetensors(st_path(d), w)
        return f

    def reshape(name, shape):
        def f(d):
            w = dict(base.w)
            w[name] = np.zeros(shape, np.float32)
            write_safetensors(st_path(d), w)
        return f

    def int_dtype(h):
        t = h["model.norm.weight"]
        t["dtype"] = "I32"

    expect("no_config", variant("no_config", rm("config.json")), "config.json")
    expect("model_type", variant("model_type", edit_config(model_type="gpt2")), "model_type", "gpt2",
           "not supported")
    expect("truncated", variant("truncated", truncate), "model.safetensors", "past the end")
    expect("overlap", variant("overlap", header_edit(overlap)), "model.safetensors", "overlap",
           "q_proj")
    expect("past_end", variant("past_end", header_edit(past_end)), "model.norm.weight", "past the end")
    expect("missing_tensor", variant("missing", drop("model.layers.1.self_attn.k_proj.weight")),
           "missing", "model.layers.1.self_attn.k_proj.weight")
    expect("missing_expert", variant("missing_e", drop("model.layers.0.block_sparse_moe.experts.3.w2.weight")),
           "model.layers.0.block_sparse_moe.experts.3.w2.weight")
    expect("misshaped", variant("misshaped", reshape("model.layers.0.self_attn.o_proj.weight", (64, 32))),
           "model.layers.0.self_attn.o_proj.weight", "[64, 32]", "[64, 64]")
    expect("dtype", variant("dtype", header_edit(int_dtype)), "model.norm.weight", "I32")
    expect("no_tokenizer", variant("no_tok", rm("tokenizer.json")), "tokenizer.json")
    expect("bad_json", variant("bad_json", lambda d: open(os.path.join(d, "config.json"), "w").write('{"a": 1,}')),
           "config.json", "byte 8")
    expect("missing_key", variant("no_heads", edit_config(num_attention_heads=None)), "num_attention_heads")
    expect("bad_type", good, "q9_9", ty="q9_9", status=mc.MOE_ERR_ARG)
    # the CLI: usage errors exit 2, failures 1
    if os.access(MOE_BIN, os.X_OK):
        r = subprocess.run([MOE_BIN, "convert", good], capture_output=True, text=True)
        r2 = subprocess.run([MOE_BIN, "convert", os.path.join(tmp, "nowhere"), out], capture_output=True, text=True)
        check("convert/errors/cli", r.returncode == 2 and r2.returncode == 1 and "config.json" in r2.stderr,
              "exit codes %d / %d, stderr %r" % (r.returncode, r2.returncode, r2.stderr[:100]))


# =================================================================== main
def main():
    global LIB
    LIB = load_lib()
    if LIB is None:
        skip("test_convert_torch", "moe_convert_hf is not in %s" % mc.default_lib_path())
        return 0
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="moe_convert_")
    rng = np.random.default_rng(11)
    try:
        for kind in FAMILIES:
            check_family(kind, tmp, rng)
        check_tokenizer_variants(tmp)
        check_quantized(tmp, rng)
        check_f16_fallback(tmp, rng)
        check_errors(tmp)
        check_transformers(tmp, rng)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, bad = counts()
    note("%d checks, %d failed, %.1f s" % (n, bad, time.time() - t0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
