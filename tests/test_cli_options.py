"""test_cli_options.py: the command line of `moe` (issue 18, "The command
line"), every command as a user would type it.

Checks, for every command and benchmark: --help exits 0 with the usage on
stdout (and the word "default" where the command has options); an option
without its value exits 2 with one line on stderr naming the option and
saying the value is missing; an unknown option exits 2 with one line naming
it (no page of usage, no C function names). Then: `train --help` lists the
router names; `-p` without a value says so; llama.cpp's habits (-t N, -m
MODEL, -f FILE gives the same text as -p with the file's content, --seed -1
prints the seed used); `sample` and `run` show the same sampling defaults;
`train` and `inspect` report the same active-parameter count, tied and
untied. The binary comes from $MOE_BIN (default build/moe).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
_state = {"n": 0, "failed": 0}

# command words, an option that takes a value (None: the command has none)
COMMANDS = [
    (["demo"], "--steps"), (["demo", "routing"], None), (["train"], "--steps"), (["sample"], "-p"),
    (["run"], "-p"), (["chat"], "--system"), (["inspect"], "--experts-per-token"), (["synth"], "--arch"),
    (["eval"], "--ctx"), (["tokenize"], None), (["quantize"], "--type"), (["convert"], "--type"),
    (["bench"], None), (["bench", "layer"], "--router"), (["bench", "gemm"], "--m"),
    (["bench", "train"], "--steps"), (["bench", "decode"], "--model"), (["bench", "prefill"], "--gen"),
    (["bench", "bandwidth"], "--mb"),
]
# a C function name in a message (moe_trainer_create, bpe_train, gguf_open ...)
FUNC = re.compile(r"\b(moe|bpe|gguf|atomic|arch|model|quant|data|cancel|state|cli)_[a-z0-9_]+\b")

TINY = ["--corpus-bytes", "60000", "--vocab", "300", "--d", "32", "--layers", "2", "--heads", "2",
        "--kv-heads", "1", "--ctx", "32", "--batch", "4", "--experts", "4", "--k", "2",
        "--expert-dff", "32", "--dff", "64", "--eval-every", "0", "--steps", "1", "--quiet"]


def check(name, cond, why):
    _state["n"] += 1
    if cond:
        print("ok %s" % name)
    else:
        _state["failed"] += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()
    return cond


def moe(*args, cwd=None):
    p = subprocess.run([MOE] + list(args), capture_output=True, cwd=cwd, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def one_line_error(name, rc, out, err, must):
    lines = err.strip().splitlines()
    check(name, rc == 2 and len(lines) == 1 and all(m in err for m in must) and "usage" not in err
          and not FUNC.search(err), "rc %d, stderr %r" % (rc, err[-400:]))


def test_every_command(tmp):
    for words, valued in COMMANDS:
        tag = "_".join(words)
        rc, out, err = moe(*words, "--help", cwd=tmp)
        check("help_%s" % tag, rc == 0 and "usage" in out and not err.strip()
              and ("default" in out or valued is None), "rc %d, stdout %r, stderr %r" % (rc, out[:200], err[:200]))
        rc, out, err = moe(*words, "--no-such-option", cwd=tmp)
        if words == ["bench"]:  # a benchmark name, not an option
            one_line_error("unknown_%s" % tag, rc, out, err, ["--no-such-option"])
        else:
            one_line_error("unknown_%s" % tag, rc, out, err, ["--no-such-option", "unknown option"])
        if valued:
            rc, out, err = moe(*words, valued, cwd=tmp)
            one_line_error("missing_value_%s" % tag, rc, out, err, [valued, "needs a value"])
    rc, out, err = moe("no-such-command", cwd=tmp)
    one_line_error("unknown_command", rc, out, err, ["no-such-command"])
    for g in ("--threads", "-t"):
        rc, out, err = moe("version", g, cwd=tmp)
        one_line_error("missing_value_global%s" % g, rc, out, err, [g, "needs a value"])
    rc, out, err = moe("-t", "1", "version", cwd=tmp)
    check("threads_short_form", rc == 0 and out.startswith("moe "), "rc %d: %r" % (rc, err))
    rc, out, err = moe("train", "--help")
    check("train_help_lists_routers", all(r in out for r in ("softmax", "switch", "expert-choice", "hash", "relu"))
          and "moe_router_names" not in out, out[-400:])
    check("train_help_save_every_default", re.search(r"--save-every\s+N\s+.*\(default 100\)", out) is not None,
          "no '--save-every ... (default 100)' in train --help")
    rc, out, err = moe("run", "--help")
    rc2, out2, err2 = moe("sample", "--help")
    pat = re.compile(r"--(temp|top-k|top-p|min-p) \w+ \((?:default )?([\d.]+)")
    a = dict(pat.findall(out))
    b = dict(pat.findall(out2))
    check("sample_run_same_defaults", a and a == b, "run %s, sample %s" % (a, b))
    for opt in ("--stop", "--echo", "--experts-per-token", "--ctx", "-f FILE", "--min-p"):
        check("sample_run_share_%s" % opt.split()[0].strip("-"), opt in out and opt in out2,
              "%s in run: %s, in sample: %s" % (opt, opt in out, opt in out2))


def test_with_models(tmp):
    for tie in ([], ["--tie"]):
        run = os.path.join(tmp, "tiny" + ("-tie" if tie else ""))
        rc, out, err = moe("-t", "1", "train", "--out", run, *(TINY[:-1] + tie))
        m = re.search(r"\((\d+) and (\d+), as moe inspect counts them\)", out)
        rc2, out2, err2 = moe("inspect", os.path.join(run, "model.gguf"))
        m2 = re.search(r"params active\s+(\d+)", out2)
        check("active_params_train_equals_inspect%s" % ("_tied" if tie else ""),
              rc == 0 and rc2 == 0 and m and m2 and m.group(2) == m2.group(1),
              "train %s, inspect %s (%s %s)" % (m and m.groups(), m2 and m2.group(1), err[-200:], err2[-200:]))
    trained = os.path.join(tmp, "tiny", "model.gguf")
    gguf = os.path.join(tmp, "syn.gguf")
    moe("synth", gguf)
    prompt_file = os.path.join(tmp, "prompt.txt")
    with open(prompt_file, "w") as f:
        f.write("The cat sat on")
    for cmd, model in (("run", gguf), ("sample", trained)):
        rc, a, e = moe("-t", "1", cmd, model, "-p", "The cat sat on", "-n", "8", "--temp", "0")
        rc2, b, e2 = moe("-t", "1", cmd, "-m", model, "-f", prompt_file, "-n", "8", "--temp", "0")
        check("%s_f_file_equals_p" % cmd, rc == 0 and rc2 == 0 and a == b, "%r vs %r (%s %s)" % (a, b, e, e2))
        rc, out, err = moe("-t", "1", cmd, model, "-p", "x", "-n", "4", "--seed", "-1")
        m = re.search(r"seed (\d+) \(give --seed \1 to repeat", err)
        ok = check("%s_seed_minus_one_prints_seed" % cmd, rc == 0 and m is not None, "rc %d, stderr %r" % (rc, err))
        if ok:
            rc2, out2, _ = moe("-t", "1", cmd, model, "-p", "x", "-n", "4", "--seed", m.group(1))
            check("%s_printed_seed_repeats" % cmd, rc2 == 0 and out2 == out, "%r vs %r" % (out, out2))
        rc, out, err = moe(cmd, model, "-p")
        one_line_error("%s_p_without_value" % cmd, rc, out, err, ["-p", "needs a value"])
        rc, out, err = moe(cmd, model, "-f", os.path.join(tmp, "missing.txt"))
        check("%s_f_missing_file" % cmd, rc == 1 and len(err.strip().splitlines()) == 1 and "missing.txt" in err,
              "rc %d, %r" % (rc, err))
    rc, out, err = moe("train", "--out", os.path.join(tmp, "bad"), "--vocab", "100")
    check("library_error_without_function_name", rc == 1 and len(err.strip().splitlines()) == 1
          and not FUNC.search(err) and "vocab" in err, "rc %d, %r" % (rc, err))


def main():
    if not os.access(MOE, os.X_OK):
        print("%s test_cli_options: no moe binary at %s (set MOE_BIN)" %
              ("FAIL" if os.environ.get("CI") == "true" else "SKIPPED", MOE))
        return 1 if os.environ.get("CI") == "true" else 0
    tmp = tempfile.mkdtemp(prefix="moe-cli-options-")
    try:
        test_every_command(tmp)
        test_with_models(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("# test_cli_options: %d checks, %d failed" % (_state["n"], _state["failed"]))
    return 1 if _state["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
