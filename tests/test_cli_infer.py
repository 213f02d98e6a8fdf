"""test_cli_infer.py: the `moe` commands that run GGUF models (run, chat,
inspect, synth, bench decode/prefill/bandwidth), driven as a user would.

The binary comes from $MOE_BIN (tests/run.sh exports it; default build/moe).
Models are tiny random ones written by `moe synth` into a temporary folder.
Checks: greedy runs repeat exactly; --stop cuts before the stop string (which
spans several tokens, the synthetic vocabulary being mostly bytes);
--experts-per-token shows in --stats; --no-bos drops one prompt token;
inspect lists every tensor and an active-weight count that matches the
tensor table; chat answers two piped turns and re-uses the KV cache; bad
files give exit code 1 with the file named, never a crash; the benchmarks
run on a tiny model. Timing is never asserted.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks as ck  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")


def moe(*args, stdin=None, timeout=60):
    """Runs moe with args (str or bytes); returns (rc, stdout bytes, stderr str).
    One thread: the outputs do not depend on it, and OpenMP barriers on a
    loaded machine would make each run take seconds."""
    p = subprocess.run([MOE, "--threads", "1"] + list(args), input=stdin, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def gen_text(model, *extra):
    rc, out, err = moe("run", model, "-p", "The cat sat on", "-n", "24", "--temp", "0", *extra)
    return rc, out, err


def test_models(tmp):
    models = {}
    for arch, wtype in (("mixtral", "f32"), ("qwen2moe", "q8_0"), ("deepseek", "f32"),
                        ("qwen3moe", "q8_0")):
        path = os.path.join(tmp, "%s-%s.gguf" % (arch, wtype))
        rc, out, err = moe("synth", path, "--arch", arch, "--type", wtype, "--seed", "5")
        if ck.check("synth_%s_%s" % (arch, wtype), rc == 0 and os.path.getsize(path) > 0,
                    "rc %d: %s" % (rc, err.strip())):
            models[arch] = path
    return models


def test_run(models):
    for arch, path in models.items():
        rc1, a, e1 = gen_text(path)
        rc2, b, e2 = gen_text(path)
        ck.check("run_greedy_repeats_%s" % arch, rc1 == 0 and rc2 == 0 and a == b and len(a) > 1,
                 "rc %d/%d, outputs %r vs %r; %s" % (rc1, rc2, a[:60], b[:60], e1.strip()[-200:]))
        ck.check("run_reports_speed_%s" % arch, re.search(r"prompt: \d+ tokens .* tok/s", e1) is not None,
                 "stderr: %r" % e1[-300:])

    path = models.get("mixtral")
    if not path:
        return
    # --stop: a 3-byte string from the middle of the greedy text (several tokens)
    rc, full, _ = gen_text(path)
    body = full[:-1]  # the closing newline
    k = next((i for i in range(4, len(body) - 3)
              if b"\0" not in body[i:i + 3] and body.find(body[i:i + 3]) == i), None)
    if k is None:
        ck.fail("run_stop", "no usable stop string in %r" % body)
    else:
        stop = body[k:k + 3]
        rc, out, err = gen_text(path, "--stop", stop)
        ck.check("run_stop", rc == 0 and out == body[:k] + b"\n",
                 "stop %r: got %r, expected %r (%s)" % (stop, out, body[:k] + b"\n", err.strip()[-200:]))
        rc, out, err = gen_text(path, "--stop", stop[1:], "--stop", b"\x01\x02never")
        j = body.find(stop[1:])
        ck.check("run_stop_two_strings", rc == 0 and out == body[:j] + b"\n",
                 "got %r, expected %r" % (out, body[:j] + b"\n"))
    rc, out, err = gen_text(path, "--stop", b"\x01\x02never")
    ck.check("run_stop_absent", rc == 0 and out == full, "got %r, expected %r" % (out, full))

    # --experts-per-token: accepted, reflected in --stats
    rc, out1, err1 = gen_text(path, "--stats", "--experts-per-token", "1")
    rc0, out2, err2 = gen_text(path, "--stats")
    m1 = re.search(r"([\d.]+) experts per token", err1)
    m2 = re.search(r"([\d.]+) experts per token", err2)
    ck.check("run_experts_per_token_stats", rc == 0 and rc0 == 0 and m1 and m2 and
             float(m1.group(1)) == 1.0 and float(m2.group(1)) == 2.0 and "k = 1" in err1,
             "stats with k=1: %r; default: %r" % (err1[-400:], err2[-400:]),
             "output %s" % ("changed" if out1 != out2 else "unchanged"))
    rows = re.findall(r"^\s+(\d+)((?:\s+[\d.]+){4})\s+[\d.]+\s+[\d.]+\s+\d+$", err2, re.M)
    sums = [sum(float(x) for x in r[1].split()) for r in rows]
    ck.check("run_stats_table", len(rows) == 2 and all(abs(s - 100) < 0.5 for s in sums),
             "rows %r in %r" % (rows, err2[-500:]))
    rc, _, err = moe("run", path, "-p", "hi", "--experts-per-token", "9")
    ck.check("run_experts_per_token_range", rc == 1 and "experts_per_token" in err, "rc %d: %s" % (rc, err))

    # --no-bos: one prompt token fewer
    _, _, e_bos = moe("run", path, "-p", "Hello world", "-n", "1")
    _, _, e_nob = moe("run", path, "-p", "Hello world", "-n", "1", "--no-bos")
    n1 = re.search(r"prompt: (\d+) tokens", e_bos)
    n2 = re.search(r"prompt: (\d+) tokens", e_nob)
    ck.check("run_no_bos", n1 and n2 and int(n1.group(1)) == int(n2.group(1)) + 1,
             "%r / %r" % (e_bos[-200:], e_nob[-200:]))

    # control-token text is one token, unless --raw
    _, _, e_sp = moe("run", path, "-p", "<|eos|>", "-n", "1")
    _, _, e_raw = moe("run", path, "-p", "<|eos|>", "-n", "1", "--raw")
    n1 = re.search(r"prompt: (\d+) tokens", e_sp)
    n2 = re.search(r"prompt: (\d+) tokens", e_raw)
    ck.check("run_parse_special_raw", n1 and n2 and int(n1.group(1)) == 2 and int(n2.group(1)) > 2,
             "%r / %r" % (e_sp[-200:], e_raw[-200:]))

    # a prompt longer than the context
    rc, _, err = moe("run", path, "-p", "a prompt longer than four tokens", "--ctx", "4")
    ck.check("run_prompt_too_long", rc == 1 and "context" in err, "rc %d: %s" % (rc, err))


def test_inspect(models):
    for arch, path in models.items():
        rc, out, err = moe("inspect", path)
        text = out.decode("utf-8", "replace")
        tensors = re.findall(r"^  (\S+\.weight|\S+\.bias)\s+(\S+)\s+([\d x]+?)\s+(\d+)\s+(\d+)$", text, re.M)
        m_tot = re.search(r"params total\s+(\d+)", text)
        m_act = re.search(r"params active\s+(\d+)", text)
        m_n = re.search(r"^tensors \((\d+)\)", text, re.M)
        ok = rc == 0 and m_tot and m_act and m_n and len(tensors) == int(m_n.group(1)) > 0
        if not ck.check("inspect_lists_%s" % arch, ok, "rc %d, %d tensors parsed: %s %s"
                        % (rc, len(tensors), text[-600:], err)):
            continue
        # active weights from the table: all, minus the E-k unused experts,
        # minus the embedding rows but one unless the output is tied to it
        E = int(re.search(r"experts\s+(\d+), top-k (\d+)", text).group(1))
        K = int(re.search(r"experts\s+(\d+), top-k (\d+)", text).group(2))
        total = active = 0
        names = set()
        for name, _, dims, _, _ in tensors:
            ne = [int(x) for x in dims.split(" x ")]
            n = 1
            for x in ne:
                n *= x
            names.add(name)
            total += n
            active += n
            if "_exps." in name:
                active -= n // E * (E - K)
            if name == "token_embd.weight":
                emb = ne
        if "output.weight" in names:
            active -= (emb[1] - 1) * emb[0]
        ck.check("inspect_params_%s" % arch, int(m_tot.group(1)) == total and int(m_act.group(1)) == active,
                 "printed total %s active %s, from the table %d and %d"
                 % (m_tot.group(1), m_act.group(1), total, active))
    path = models.get("mixtral")
    if path:
        rc, out, _ = moe("inspect", path)
        text = out.decode("utf-8", "replace")
        ck.check("inspect_metadata", rc == 0 and re.search(r"general\.architecture\s+str\s+\"llama\"", text)
                 and re.search(r"tokenizer\.ggml\.tokens\s+\[string\] 320 elements: .*\.\.\.", text)
                 and "bytes per token" in text, text[:800])


def test_chat(models):
    path = models.get("mixtral")
    if not path:
        return
    args = ("chat", path, "--temp", "0", "-n", "6", "--ctx", "1024", "--system", "Be brief.")
    rc, out, err = moe(*args, stdin=b"Hello there\n\nWhat is a cat?\n")
    turns = re.findall(r"\[turn (\d+): (\d+) prompt tokens, (\d+) evaluated \((\d+) re-used", err)
    ck.check("chat_two_turns", rc == 0 and len(turns) == 2 and out.count(b"\n") >= 2,
             "rc %d, turns %r, stdout %r, stderr %r" % (rc, turns, out, err[-400:]))
    if len(turns) == 2:
        ck.check("chat_reuses_cache", int(turns[1][3]) > int(turns[0][1]) // 2,
                 "turn 2 re-used %s tokens of turn 1's %s" % (turns[1][3], turns[0][1]))
    rc2, out2, _ = moe(*args, stdin=b"Hello there\n\nWhat is a cat?\n")
    ck.check("chat_greedy_repeats", rc2 == 0 and out2 == out, "%r vs %r" % (out, out2))
    rc, out, err = moe("chat", path, "--template", "chatml", "-n", "4", stdin=b"hi\n")
    ck.check("chat_template_option", rc == 0 and "[turn 1:" in err, "rc %d: %s" % (rc, err[-300:]))
    rc, out, err = moe("chat", path, "--template", "nonesuch", stdin=b"hi\n")
    ck.check("chat_bad_template", rc == 1 and "nonesuch" in err, "rc %d: %s" % (rc, err[-300:]))
    rc, out, err = moe("chat", path, "-n", "4", stdin=b"")
    ck.check("chat_empty_stdin", rc == 0 and out == b"", "rc %d: %r %s" % (rc, out, err[-300:]))


def test_bad_files(tmp, models):
    good = models.get("mixtral")
    trunc = os.path.join(tmp, "truncated.gguf")
    notg = os.path.join(tmp, "not-a-model.gguf")
    missing = os.path.join(tmp, "missing.gguf")
    if good:
        with open(good, "rb") as f:
            data = f.read()
        with open(trunc, "wb") as f:
            f.write(data[: len(data) // 2])
    with open(notg, "wb") as f:
        f.write(b"this is plain text, not a GGUF file\n" * 4)
    for path in (missing, trunc, notg):
        if path == trunc and not good:
            continue
        base = os.path.basename(path)
        for cmd in (("run", path, "-p", "hi"), ("inspect", path), ("chat", path)):
            rc, out, err = moe(*cmd, stdin=b"hi\n")
            ck.check("bad_file_%s_%s" % (cmd[0], base.split(".")[0]), rc == 1 and base in err,
                     "rc %d (expected 1), stderr %r" % (rc, err[-300:]))
    rc, _, err = moe("synth", os.path.join(tmp, "x.gguf"), "--arch", "nonesuch")
    ck.check("synth_bad_arch", rc == 1 and "nonesuch" in err, "rc %d: %s" % (rc, err))
    rc, _, err = moe("synth", os.path.join(tmp, "x.gguf"), "--type", "q9_9")
    ck.check("synth_bad_type", rc == 1 and "q9_9" in err, "rc %d: %s" % (rc, err))
    rc, _, err = moe("run", "--nonesuch")
    ck.check("run_usage_error", rc == 2, "rc %d: %s" % (rc, err[-200:]))


def test_bench(models):
    path = models.get("qwen2moe")
    if not path:
        return
    rc, out, err = moe("bench", "bandwidth", "--mb", "8", "--iters", "2")
    ck.check("bench_bandwidth", rc == 0 and re.search(rb"[\d.]+ GB/s", out), "rc %d: %r %s" % (rc, out, err))
    rc, out, err = moe("bench", "decode", "--model", path, "--tokens", "4", "--iters", "1", "--mb", "8")
    ck.check("bench_decode", rc == 0 and re.search(rb"decode: .* tok/s", out) and b"ratio" in out,
             "rc %d: %r %s" % (rc, out, err))
    rc, out, err = moe("bench", "prefill", "--model", path, "--tokens", "32", "--iters", "1")
    ck.check("bench_prefill", rc == 0 and re.search(rb"prefill: 32 tokens .* GFLOP/s", out) and b"ratio" in out,
             "rc %d: %r %s" % (rc, out, err))
    rc, out, err = moe("bench", "decode", "--gen", "nocolon")
    ck.check("bench_gen_bad", rc == 1 and "ARCH:TYPE" in err, "rc %d: %s" % (rc, err))


def main():
    if not os.access(MOE, os.X_OK):
        print("SKIPPED test_cli_infer: no moe binary at %s (set MOE_BIN)" % MOE)
        return 0
    tmp = tempfile.mkdtemp(prefix="moe-cli-infer-")
    try:
        models = test_models(tmp)
        test_run(models)
        test_inspect(models)
        test_chat(models)
        test_bad_files(tmp, models)
        test_bench(models)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, failed = ck.counts()
    print("# test_cli_infer: %d checks, %d failed" % (n, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
