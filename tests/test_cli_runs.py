"""test_cli_runs.py: runs that never lose work (issue 18), driven through the
`moe` command as a user would, on tiny configurations (seconds in all).

Checks: kill -9 in the middle of a run, then --resume continues from the
last periodic checkpoint (at most --save-every steps back) and finishes;
metrics.jsonl after the kill parses line by line and agrees with the
console's step lines; SIGINT / SIGTERM of train stops it with a checkpoint
and exit status 130 / 143; SIGINT of synth, quantize, convert and demo
exits 130 and leaves no temporary file (atomic_file's ".NAME.tmp.PID.N");
a write to a full stdout (/dev/full) exits non-zero with a message; the
demo never overwrites an earlier run (a second run takes a new folder, an
--out that holds a run is refused); --resume with a larger --steps holds the
learning rate at --min-lr after the first schedule and says so, with a
smaller one trains nothing and leaves the checkpoint as it was; a data error
leaves no empty --out folder; a failed save says truly what is on disk.

The binary comes from $MOE_BIN (default build/moe). Timing is never asserted:
a signal is sent once the command is seen working (a metrics line, a
temporary file), so the checks hold on a slow or loaded machine.
"""
import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
import shutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
_state = {"n": 0, "failed": 0}

TINY = ["--corpus-bytes", "60000", "--vocab", "300", "--d", "32", "--layers", "1", "--heads", "2",
        "--kv-heads", "1", "--ctx", "32", "--batch", "4", "--experts", "4", "--k", "2",
        "--expert-dff", "32", "--dff", "64", "--eval-every", "0", "--warmup", "2"]


def check(name, cond, why):
    _state["n"] += 1
    if cond:
        print("ok %s" % name)
    else:
        _state["failed"] += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()
    return cond


def moe(*args, cwd=None, timeout=120):
    p = subprocess.run([MOE, "--threads", "1"] + list(args), capture_output=True, cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def start(*args, cwd=None, out=None):
    return subprocess.Popen([MOE, "--threads", "1"] + list(args), cwd=cwd,
                            stdout=out if out else subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(cond, proc, limit=120.0):
    """Polls cond() until true (or the process ends, or limit seconds: a hang)."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if cond():
            return True
        if proc.poll() is not None:
            return cond()
        time.sleep(0.002)
    return False


def tmp_files(folder):
    found = []
    for dp, _, names in os.walk(folder):
        found += [os.path.join(dp, n) for n in names if ".tmp." in n or n.endswith(".tmp")]
    return found


def metrics_steps(path):
    """The step of each complete line (None when a line does not parse)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return [], True
    lines = data.split(b"\n")
    ends_whole = data.endswith(b"\n") or not data
    steps = []
    for ln in lines[:-1]:
        try:
            steps.append(json.loads(ln)["step"])
        except (ValueError, KeyError):
            steps.append(None)
    return steps, ends_whole


def last_step(path):
    steps, _ = metrics_steps(path)
    good = [s for s in steps if s is not None]
    return good[-1] if good else 0


# ---------------------------------------------------------------- kill -9

def test_kill9_resume(tmp):
    run = os.path.join(tmp, "k9")
    console = open(os.path.join(tmp, "k9.console"), "wb")
    p = start("train", "--out", run, *TINY, "--save-every", "5", "--steps", "1000000", out=console)
    metrics = os.path.join(run, "metrics.jsonl")
    seen = wait_for(lambda: last_step(metrics) >= 12, p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    console.close()
    if not check("kill9_mid_run", seen and p.returncode == -9, "never saw step 12 (rc %s)" % p.returncode):
        return
    steps, whole = metrics_steps(metrics)
    check("kill9_metrics_whole_lines", whole and steps and None not in steps,
          "the file ends mid-line (%s) or a line does not parse: %s" % (not whole, steps[-5:]))
    check("kill9_metrics_consecutive", steps == list(range(1, len(steps) + 1)),
          "steps %s..." % steps[:20])
    # the console's step lines agree with metrics.jsonl
    loss = {}
    with open(metrics) as f:
        for ln in f:
            d = json.loads(ln)
            loss[d["step"]] = d["loss"]
    bad = []
    for m in re.finditer(r"step\s+(\d+)/\d+\s+loss (\d+\.\d+)", open(os.path.join(tmp, "k9.console")).read()):
        s, v = int(m.group(1)), float(m.group(2))
        if s not in loss or abs(loss[s] - v) > 1e-4:
            bad.append((s, v, loss.get(s)))
    check("kill9_console_matches_metrics", not bad, "console vs metrics: %s" % bad[:5])
    L = steps[-1]
    rc, out, err = moe("train", "--resume", run, "--steps", "40")
    m = re.search(r"resuming \S+ at step (\d+) of 40", out)
    S = int(m.group(1)) if m else -1
    check("kill9_resume_from_periodic_checkpoint", rc == 0 and S % 5 == 0 and L - 5 <= S <= L,
          "rc %d, resumed at step %d, last metrics step %d (save every 5): %s" % (rc, S, L, err.strip()[-300:]))
    steps, whole = metrics_steps(metrics)
    check("kill9_resume_finishes", rc == 0 and steps and steps[-1] == 40 and re.search(r"at step 40", out),
          "rc %d, last metrics step %s" % (rc, steps[-1:] if steps else None))
    check("kill9_resume_metrics_once_per_step", steps == list(range(1, 41)),
          "steps after resume: %s" % steps[-50:])
    check("kill9_resume_removes_stale_tmp_files", not tmp_files(run), "left: %s" % tmp_files(run))


# ---------------------------------------------------------- signals, train

def test_signal_train(tmp):
    for sig, want, name in ((signal.SIGINT, 130, "sigint"), (signal.SIGTERM, 143, "sigterm")):
        run = os.path.join(tmp, "sig-" + name)
        p = start("train", "--out", run, *TINY, "--save-every", "1000", "--steps", "1000000", "--quiet")
        seen = wait_for(lambda: last_step(os.path.join(run, "metrics.jsonl")) >= 3, p)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
        err = err.decode("utf-8", "replace")
        check("train_%s_exit_%d" % (name, want), seen and p.returncode == want,
              "rc %s (saw a step: %s): %s" % (p.returncode, seen, err.strip()[-300:]))
        check("train_%s_checkpoint_saved" % name,
              os.path.exists(os.path.join(run, "state.gguf")) and "checkpoint saved" in err and "--resume" in err,
              "stderr: %s; files %s" % (err.strip()[-300:], os.listdir(run)))
        check("train_%s_no_tmp_files" % name, not tmp_files(run), "left: %s" % tmp_files(run))
        last = last_step(os.path.join(run, "metrics.jsonl"))
        rc, out, e2 = moe("train", "--resume", run, "--steps", str(last + 2), "--quiet")
        check("train_%s_resumes" % name, rc == 0 and last_step(os.path.join(run, "metrics.jsonl")) == last + 2,
              "rc %d: %s" % (rc, e2.strip()[-300:]))


def test_signal_while_preparing(tmp):
    """Ctrl-C during tokenizer training, seen through the progress line that
    train draws when stderr is a terminal (a pty here)."""
    import pty
    run = os.path.join(tmp, "prep")
    master, slave = pty.openpty()
    p = subprocess.Popen([MOE, "--threads", "1", "train", "--out", run, "--corpus-bytes", "4000000",
                          "--vocab", "6000", "--steps", "100000", "--d", "32", "--layers", "1", "--heads", "2",
                          "--kv-heads", "1", "--ctx", "32", "--batch", "4", "--experts", "4", "--k", "2",
                          "--expert-dff", "32", "--dff", "64", "--eval-every", "0"],
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen, buf = False, b""
    t0 = time.time()
    while time.time() - t0 < 120 and not seen:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        buf += chunk
        seen = b"training the tokenizer" in buf
    p.send_signal(signal.SIGINT)
    try:
        while os.read(master, 4096):
            pass
    except OSError:
        pass
    out, _ = p.communicate(timeout=120)
    os.close(master)
    check("train_progress_on_terminal", seen, "stderr on a pty: %r" % buf[-300:])
    stopped_early = b"checkpoint saved" not in buf
    check("train_sigint_while_preparing", p.returncode == 130 and not tmp_files(tmp)
          and (not stopped_early or not os.path.exists(run)),
          "rc %s, folder %s, temporary files %s, stderr %r" % (p.returncode, os.path.exists(run), tmp_files(tmp),
                                                               buf[-300:]))


# ------------------------------------------------- signals, file writers

def hf_folder(path, d=256, L=4, E=8, ff=512, V=300):
    """A Mixtral folder of zero weights (large enough to take a moment)."""
    os.makedirs(path, exist_ok=True)
    tensors = [("model.embed_tokens.weight", [V, d]), ("model.norm.weight", [d]), ("lm_head.weight", [V, d])]
    for layer in range(L):
        p = "model.layers.%d." % layer
        tensors += [(p + "input_layernorm.weight", [d]), (p + "post_attention_layernorm.weight", [d]),
                    (p + "self_attn.q_proj.weight", [d, d]), (p + "self_attn.k_proj.weight", [d // 2, d]),
                    (p + "self_attn.v_proj.weight", [d // 2, d]), (p + "self_attn.o_proj.weight", [d, d]),
                    (p + "block_sparse_moe.gate.weight", [E, d])]
        for e in range(E):
            b = p + "block_sparse_moe.experts.%d." % e
            tensors += [(b + "w1.weight", [ff, d]), (b + "w3.weight", [ff, d]), (b + "w2.weight", [d, ff])]
    header, off = {}, 0
    for name, shape in tensors:
        n = 4
        for s in shape:
            n *= s
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(path, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + off)  # zeros
    cfg = {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "vocab_size": V, "hidden_size": d,
           "num_hidden_layers": L, "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": False,
           "hidden_act": "silu", "bos_token_id": 256, "eos_token_id": 257, "intermediate_size": ff,
           "num_local_experts": E, "num_experts_per_tok": 2}
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_map = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {byte_map[b]: i for i, b in enumerate(range(256))}
    added = []
    for s in ["<s>", "</s>"]:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[s] = len(vocab)
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                             "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "vocab": vocab, "merges": []}}
    with open(os.path.join(path, "tokenizer.json"), "w") as f:
        json.dump(tok, f)


def interrupt_writer(name, folder, make_args, out_path):
    """Starts moe ARGS, sends SIGINT once its temporary file shows in folder.
    A run that ends before its temporary file is seen (a fast machine) is
    tried again, bigger (make_args(attempt)); every attempt must leave no
    temporary file, and one must be caught mid-write and exit 130."""
    base = os.path.basename(out_path)
    for attempt in range(4):
        if os.path.exists(out_path):
            os.remove(out_path)
        p = start(*make_args(attempt))
        seen = wait_for(lambda: any(n.startswith("." + base + ".tmp.") for n in os.listdir(folder)), p)
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=300)
        err = err.decode("utf-8", "replace")
        if not check("%s_sigint_no_tmp_files_%d" % (name, attempt), not tmp_files(folder) and p.returncode in (0, 130),
                     "rc %s, left: %s: %s" % (p.returncode, tmp_files(folder), err.strip()[-300:])):
            return
        if seen:
            break
    check("%s_sigint_exit_130" % name, seen and p.returncode == 130,
          "rc %s (saw the temporary file: %s): %s" % (p.returncode, seen, err.strip()[-300:]))
    check("%s_sigint_one_line" % name, len(err.strip().splitlines()) <= 2 and "Traceback" not in err,
          "stderr: %r" % err[-400:])


def test_signal_writers(tmp):
    d = os.path.join(tmp, "writers")
    os.makedirs(d)

    def big(a):
        return ["--d", "256", "--layers", str(4 << a), "--experts", "8", "--dff", "512"]
    out = os.path.join(d, "s.gguf")
    interrupt_writer("synth", d, lambda a: ["synth", out] + big(a), out)
    srcs = [os.path.join(d, "src0.gguf")]
    rc, _, err = moe("synth", srcs[0], *big(0))
    if not check("writers_source_model", rc == 0, err.strip()):
        return
    q = os.path.join(d, "q.gguf")

    def quant(a):
        while len(srcs) <= a:  # a bigger source only when needed
            src = os.path.join(d, "src%d.gguf" % len(srcs))
            moe("synth", src, *big(len(srcs)))
            srcs.append(src)
        return ["quantize", srcs[a], q, "--type", "q8_0"]
    interrupt_writer("quantize", d, quant, q)
    for s in srcs:
        os.remove(s)
    c = os.path.join(d, "c.gguf")

    def conv(a):
        hf = os.path.join(tmp, "hf%d" % a)
        if not os.path.exists(hf):
            hf_folder(hf, L=4 << a)
        return ["convert", hf, c, "--type", "f32"]
    interrupt_writer("convert", d, conv, c)
    for a in range(4):
        shutil.rmtree(os.path.join(tmp, "hf%d" % a), ignore_errors=True)


# --------------------------------------------------------------- the demo

def test_demo(tmp):
    cwd = os.path.join(tmp, "demo")
    os.makedirs(cwd)
    small = TINY + ["--steps", "6", "--save-every", "3"]
    rc, out, err = moe("demo", *small, cwd=cwd)
    first = os.path.join(cwd, "build", "demo-run", "model.gguf")
    ok = check("demo_first_run", rc == 0 and os.path.exists(first), "rc %d: %s" % (rc, err.strip()[-300:]))
    if ok:
        before = open(first, "rb").read()
        rc, out, err = moe("demo", *small, cwd=cwd)
        second = os.path.join(cwd, "build", "demo-run.2", "model.gguf")
        check("demo_second_run_new_folder", rc == 0 and os.path.exists(second) and "demo-run.2" in out,
              "rc %d, out %s: %s" % (rc, out[:200], err.strip()[-200:]))
        check("demo_keeps_first_model", open(first, "rb").read() == before, "build/demo-run/model.gguf changed")
        rc, out, err = moe("demo", "--out", os.path.join(cwd, "build", "demo-run"), *small, cwd=cwd)
        check("demo_refuses_used_out", rc == 1 and "rm -r" in err and len(err.strip().splitlines()) == 1
              and open(first, "rb").read() == before, "rc %d: %r" % (rc, err))
    # Ctrl-C during training: exit 130, no "trained N steps", no temporary file
    out_dir = os.path.join(cwd, "int")
    p = start("demo", "--out", out_dir, *TINY, "--steps", "1000000", "--save-every", "1000")
    seen = wait_for(lambda: last_step(os.path.join(out_dir, "metrics.jsonl")) >= 2, p)
    p.send_signal(signal.SIGINT)
    o, e = p.communicate(timeout=120)
    o, e = o.decode("utf-8", "replace"), e.decode("utf-8", "replace")
    check("demo_sigint_exit_130", seen and p.returncode == 130, "rc %s: %s" % (p.returncode, e.strip()[-300:]))
    check("demo_sigint_no_summary", "trained" not in o and "demo done" not in o, "stdout tail: %r" % o[-300:])
    check("demo_sigint_no_tmp_files", not tmp_files(out_dir), "left: %s" % tmp_files(out_dir))


# ------------------------------------------------------------ resume rules

def test_resume_steps(tmp):
    run = os.path.join(tmp, "rs")
    rc, out, err = moe("train", "--out", run, *TINY, "--steps", "10", "--save-every", "5", "--min-lr", "0.0003",
                       "--quiet")
    if not check("resume_base_run", rc == 0, err.strip()[-300:]):
        return
    state = os.path.join(run, "state.gguf")
    st0 = open(state, "rb").read()
    rc, out, err = moe("train", "--resume", run, "--steps", "6")
    check("resume_smaller_steps_trains_nothing", rc == 0 and "nothing left to train" in out
          and open(state, "rb").read() == st0 and last_step(os.path.join(run, "metrics.jsonl")) == 10,
          "rc %d, out %r, err %r" % (rc, out[-300:], err[-300:]))
    rc, out, err = moe("train", "--resume", run, "--steps", "10")
    check("resume_equal_steps_trains_nothing", rc == 0 and "nothing left to train" in out
          and open(state, "rb").read() == st0, "rc %d, out %r" % (rc, out[-300:]))
    rc, out, err = moe("train", "--resume", run, "--steps", "14")
    lrs = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for ln in f:
            d = json.loads(ln)
            lrs[d["step"]] = d["lr"]
    check("resume_larger_steps_says_rule", rc == 0 and re.search(r"schedule ended at step 10; steps 11-14 hold", out),
          "rc %d, out %r, err %r" % (rc, out[-400:], err[-300:]))
    check("resume_larger_steps_holds_min_lr", all(abs(lrs.get(s, -1) - 0.0003) < 1e-9 for s in range(11, 15))
          and max(lrs.values()) > 0.001, "lr by step: %s" % lrs)


# ------------------------------------------------------- errors leave nothing

def test_errors(tmp):
    out = os.path.join(tmp, "never")
    rc, o, e = moe("train", "--data", os.path.join(tmp, "missing.txt"), "--out", out, *TINY, "--steps", "2")
    check("data_error_leaves_no_out_folder", rc == 1 and not os.path.exists(out) and len(e.strip().splitlines()) == 1,
          "rc %d, exists %s, stderr %r" % (rc, os.path.exists(out), e))
    # a failed save says what is on disk: model.gguf cannot be replaced (a folder)
    run = os.path.join(tmp, "fs")
    rc, o, e = moe("train", "--out", run, *TINY, "--steps", "4")
    check("no_progress_line_when_not_a_terminal", "\r" not in e and "training the tokenizer" not in e, repr(e[-200:]))
    if check("failed_save_base_run", rc == 0, e.strip()[-200:]):
        os.remove(os.path.join(run, "model.gguf"))
        os.makedirs(os.path.join(run, "model.gguf", "x"))
        rc, o, e = moe("train", "--resume", run, "--steps", "6", "--quiet")
        check("failed_save_message_true", rc == 1 and "state.gguf holds step 6" in e and "intact" not in e,
              "rc %d, stderr %r" % (rc, e[-400:]))
        check("failed_save_no_tmp_files", not tmp_files(run), "left: %s" % tmp_files(run))


def test_dev_full(tmp):
    if not os.path.exists("/dev/full"):
        print("SKIPPED dev_full: no /dev/full")
        return
    model = os.path.join(tmp, "full.gguf")
    moe("synth", model)
    for name, args in (("version", ["version"]), ("help", ["--help"]), ("train_help", ["train", "--help"]),
                       ("inspect", ["inspect", model]),
                       ("run", ["run", model, "-p", "hi", "-n", "4", "--temp", "0"])):
        with open("/dev/full", "wb") as full:
            p = subprocess.run([MOE, "--threads", "1"] + args, stdout=full, stderr=subprocess.PIPE, timeout=60)
        err = p.stderr.decode("utf-8", "replace")
        check("dev_full_%s" % name, p.returncode != 0 and "could not write" in err,
              "rc %d, stderr %r" % (p.returncode, err[-200:]))


def main():
    if not os.access(MOE, os.X_OK):
        print("%s test_cli_runs: no moe binary at %s (set MOE_BIN)" %
              ("FAIL" if os.environ.get("CI") == "true" else "SKIPPED", MOE))
        return 1 if os.environ.get("CI") == "true" else 0
    tmp = tempfile.mkdtemp(prefix="moe-cli-runs-")
    try:
        test_kill9_resume(tmp)
        test_signal_train(tmp)
        test_signal_while_preparing(tmp)
        test_signal_writers(tmp)
        test_demo(tmp)
        test_resume_steps(tmp)
        test_errors(tmp)
        test_dev_full(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("# test_cli_runs: %d checks, %d failed" % (_state["n"], _state["failed"]))
    return 1 if _state["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
