#!/usr/bin/env python3
"""make_seeds.py OUT: the seed corpora of the text-shaped harnesses, in
OUT/<harness>/: Hugging Face folders for fuzz_convert (config.json,
tokenizer.json, model.safetensors, tokenizer_config.json joined by the
harness's separator), safetensors files and sharded folders, JSON documents
and chat inputs. Python's standard library only (the project writes no
safetensors in C; the layout is the one tests/test_convert_torch.py writes).
The GGUF seeds come from the project's own writers: tests/fuzz/make_seeds.c."""
import json
import os
import random
import struct
import sys

SEP = b"\n#moe-fuzz-file#\n"
OUT = sys.argv[1]


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tensor_bytes(vals, dtype):
    if dtype == "F32":
        return struct.pack("<%df" % len(vals), *vals)
    f32 = struct.pack("<%df" % len(vals), *vals)
    if dtype == "BF16":
        return b"".join(f32[i + 2:i + 4] for i in range(0, len(f32), 4))
    return struct.pack("<%de" % len(vals), *[max(-6e4, min(6e4, v)) for v in vals])


def safetensors(tensors, dtype="F32", meta=None):
    """tensors: [(name, shape, values)]."""
    header, blobs, off = {}, [], 0
    if meta is not None:
        header["__metadata__"] = meta
    for name, shape, vals in tensors:
        b = tensor_bytes(vals, dtype)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def bytelevel_tokenizer():
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
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
        vocab[s] = len(vocab)
    return json.dumps({"version": "1.0", "added_tokens": added, "normalizer": None,
                       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False,
                                         "trim_offsets": True, "use_regex": True},
                       "post_processor": None, "decoder": {"type": "ByteLevel"},
                       "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab,
                                 "merges": [a + " " + b for a, b in merges]}}), len(vocab)


def hf_model(kind, rng, scale=1.0, d=32, H=2, Hkv=1, hd=16, E=2, k=1, ff=32, V=272):
    L = 2 if kind == "deepseek" else 1
    n_dense = 1 if kind == "deepseek" else 0
    tied = kind in ("qwen3_moe", "granitemoe")
    t = []

    def mat(name, *shape):
        n = 1
        for s in shape:
            n *= s
        t.append((name, list(shape), [rng.gauss(0, 1) * scale / 4 for _ in range(n)]))

    def vec(name, n, norm=True):
        t.append((name, [n], [(1.0 if norm else 0.0) * scale + rng.gauss(0, 0.1) * scale for _ in range(n)]))

    q, kv = H * hd, Hkv * hd
    mat("model.embed_tokens.weight", V, d)
    for l in range(L):
        p = "model.layers.%d." % l
        vec(p + "input_layernorm.weight", d)
        vec(p + "post_attention_layernorm.weight", d)
        mat(p + "self_attn.q_proj.weight", q, d)
        mat(p + "self_attn.k_proj.weight", kv, d)
        mat(p + "self_attn.v_proj.weight", kv, d)
        mat(p + "self_attn.o_proj.weight", d, q)
        if kind == "qwen2_moe":
            for x, n in (("q", q), ("k", kv), ("v", kv)):
                vec(p + "self_attn.%s_proj.bias" % x, n, norm=False)
        if kind == "qwen3_moe":
            vec(p + "self_attn.q_norm.weight", hd)
            vec(p + "self_attn.k_norm.weight", hd)
        if kind == "olmoe":
            vec(p + "self_attn.q_norm.weight", q)
            vec(p + "self_attn.k_norm.weight", kv)
        if kind == "llama" or l < n_dense:
            mat(p + "mlp.gate_proj.weight", ff, d)
            mat(p + "mlp.up_proj.weight", ff, d)
            mat(p + "mlp.down_proj.weight", d, ff)
            continue
        if kind == "granitemoe":
            mat(p + "block_sparse_moe.router.layer.weight", E, d)
            mat(p + "block_sparse_moe.input_linear.weight", E, 2 * ff, d)
            mat(p + "block_sparse_moe.output_linear.weight", E, d, ff)
            continue
        if kind == "mixtral":
            mat(p + "block_sparse_moe.gate.weight", E, d)
            for e in range(E):
                b = p + "block_sparse_moe.experts.%d." % e
                mat(b + "w1.weight", ff, d)
                mat(b + "w3.weight", ff, d)
                mat(b + "w2.weight", d, ff)
            continue
        mat(p + "mlp.gate.weight", E, d)
        for e in range(E):
            b = p + "mlp.experts.%d." % e
            mat(b + "gate_proj.weight", ff, d)
            mat(b + "up_proj.weight", ff, d)
            mat(b + "down_proj.weight", d, ff)
        if kind in ("qwen2_moe", "deepseek"):
            b = p + ("mlp.shared_expert." if kind == "qwen2_moe" else "mlp.shared_experts.")
            mat(b + "gate_proj.weight", ff, d)
            mat(b + "up_proj.weight", ff, d)
            mat(b + "down_proj.weight", d, ff)
            if kind == "qwen2_moe":
                mat(p + "mlp.shared_expert_gate.weight", 1, d)
    vec("model.norm.weight", d)
    if not tied:
        mat("lm_head.weight", V, d)
    c = {"model_type": kind, "architectures": ["X"], "vocab_size": V, "hidden_size": d,
         "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": Hkv,
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64,
         "tie_word_embeddings": tied, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2}
    if kind == "llama":
        c.update(intermediate_size=ff)
    elif kind in ("mixtral", "granitemoe"):
        c.update(intermediate_size=ff, num_local_experts=E, num_experts_per_tok=k)
        if kind == "granitemoe":
            c.update(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.15,
                     logits_scaling=8.0)
    elif kind in ("qwen2_moe", "qwen3_moe"):
        c.update(num_experts=E, num_experts_per_tok=k, moe_intermediate_size=ff, intermediate_size=ff,
                 norm_topk_prob=kind == "qwen3_moe", decoder_sparse_step=1, mlp_only_layers=[])
        if kind == "qwen2_moe":
            c["shared_expert_intermediate_size"] = ff
    elif kind == "olmoe":
        c.update(num_experts=E, num_experts_per_tok=k, intermediate_size=ff, norm_topk_prob=False)
    elif kind == "deepseek":
        c.update(n_routed_experts=E, num_experts_per_tok=k, moe_intermediate_size=ff,
                 intermediate_size=ff, n_shared_experts=1, first_k_dense_replace=1, moe_layer_freq=1,
                 norm_topk_prob=False, scoring_func="softmax")
    return c, t


def main():
    rng = random.Random(19)
    tok, _ = bytelevel_tokenizer()
    tcfg = json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False,
                       "chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
                                        "{{ m['content'] }}<|im_end|>\n{% endfor %}"})
    kinds = ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek", "granitemoe", "llama"]
    dtypes = ["BF16", "F16", "F32"]
    for i, kind in enumerate(kinds):
        cfg, ts = hf_model(kind, rng)
        st = safetensors(ts, dtypes[i % 3], meta={"format": "pt"})
        body = SEP.join([json.dumps(cfg, indent=1).encode(), tok.encode(), st, tcfg.encode()])
        put("convert", "%s.hf" % kind, bytes([i * 2]) + body)
        put("json", "config_%s.json" % kind, json.dumps(cfg, indent=1).encode())
        put("safetensors", "%s.safetensors" % kind, st)
    # issue #19, 1: F32 weights around 1e-39 converted to q4_0 / q8_0 / q5_1
    cfg, ts = hf_model("mixtral", rng, scale=1e-38)
    st = safetensors(ts, "F32")
    for ty in (4, 3, 7):
        put("convert", "tiny_weights_%d.hf" % ty,
            bytes([ty]) + SEP.join([json.dumps(cfg).encode(), tok.encode(), st]))
    # issue #19, 4: a 300-byte config.json with 100000 layers of 65536 experts
    huge = {"model_type": "mixtral", "vocab_size": 272, "hidden_size": 32, "num_hidden_layers": 100000,
            "num_attention_heads": 2, "num_key_value_heads": 1, "intermediate_size": 32,
            "num_local_experts": 65536, "num_experts_per_tok": 2, "rms_norm_eps": 1e-5}
    cfg, ts = hf_model("mixtral", rng)
    put("convert", "huge_config.hf", bytes([0]) + SEP.join([json.dumps(huge).encode(), tok.encode(),
                                                            safetensors(ts, "BF16")]))
    # issue #19, 2: the 10-byte safetensors file "{}"
    put("safetensors", "empty_header.safetensors", struct.pack("<Q", 2) + b"{}")
    put("convert", "empty_weights.hf", bytes([3]) + SEP.join([json.dumps(huge).encode(), tok.encode(),
                                                              struct.pack("<Q", 2) + b"{}"]))
    # shards: two files and the index, as the harness cuts them
    cfg, ts = hf_model("qwen3_moe", rng)
    a, b = ts[0::2], ts[1::2]
    wm = {n: "model-00001-of-00002.safetensors" for n, _, _ in a}
    wm.update({n: "model-00002-of-00002.safetensors" for n, _, _ in b})
    put("safetensors", "sharded.st", SEP.join([safetensors(a, "F16"), safetensors(b, "BF16"),
                                               json.dumps({"metadata": {"total_size": 0},
                                                           "weight_map": wm}).encode()]))
    put("json", "index.json", json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}).encode())
    put("json", "tokenizer.json", tok.encode())
    put("json", "tokenizer_config.json", tcfg.encode())
    put("json", "values.json", b'{"a": [1, -2.5e-3, 1e308, true, false, null, "\\u00e9\\ud83d\\ude00\\n"],'
                               b' "b": {"c": {}}, "d": [[[]]], "e": "x\\"y\\\\z", "f": 9007199254740993}')
    # chat: byte 0 the architecture (bit 0: add the assistant's turn), byte 1 the cap / 4
    msgs = b"system\0Be brief.\0user\0Hello <|im_end|> there\0assistant\0Hi!\0user\0\xc3\xa9\xf0\x9f\x98\x80?"
    templates = [b"", b"{{ '<|im_start|>' }}", b"<|start_header_id|>x<|end_header_id|>",
                 b"<|start_of_role|>", "<\uff5cUser\uff5c> <\uff5cAssistant\uff5c>".encode(),
                 b"'User: ' 'Assistant:'", b"[INST]", b"<|assistant|><|end|>", b"<|assistant|><|user|>"]
    for i, t in enumerate(templates):
        put("chat", "t%d.chat" % i, bytes([i, 64 if i % 2 else 3]) + t + SEP + msgs)
    # vocab: a text after the file is in the GGUF seeds (make_seeds.c)


main()
