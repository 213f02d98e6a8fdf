"""test_train_cli.py: `moe train` on data as it comes, and the options that
must tell the truth, driven as a user would (issue 18).

The binary comes from $MOE_BIN (tests/run.sh exports it; default build/moe).
Each run is a tiny model for 1-2 steps, so the whole file takes seconds.
Checks:
- a folder with plain, .gz, .xz and .zst files (and a gzip file named .txt),
  a symbolic link and a hard link to one file, and a binary file: without
  --skip-bad one line naming the binary file and --skip-bad, exit 1; with it,
  a warning naming the file, each link read once, and a validation line that
  names every source (validation drawn from each of them);
- a text file cut in the middle of a UTF-8 character: read, with a warning;
- --vocab 256 (bytes alone) accepted;
- router presets independent of option order: `--router shared --expert-dff
  X` and `--expert-dff X --router shared` write the same model, with a shared
  expert of width X; `--aux 0 --router softmax` keeps aux 0;
- --k 1 with renormalised weights warns and names --renorm 0; --renorm 0 and
  --router switch do not warn;
- the routing table and metrics.jsonl report starved experts.
zstd files are written through libzstd (ctypes), which libmoe links anyway.
"""
import ctypes
import ctypes.util
import gzip
import json
import lzma
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checks as ck  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
CI = os.environ.get("CI") == "true"

TINY = ["--d", "32", "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ctx", "16", "--batch", "2",
        "--steps", "1", "--vocab", "300", "--experts", "4", "--dff", "32", "--expert-dff", "32",
        "--eval-every", "0", "--corpus-bytes", "40000"]


def moe(*args, timeout=120):
    """Runs moe with one thread; returns (rc, stdout str, stderr str)."""
    p = subprocess.run([MOE, "--threads", "1"] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def zstd_compress(data):
    name = ctypes.util.find_library("zstd") or "libzstd.so.1"
    z = ctypes.CDLL(name)
    z.ZSTD_compressBound.restype = ctypes.c_size_t
    z.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    z.ZSTD_compress.restype = ctypes.c_size_t
    z.ZSTD_compress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    z.ZSTD_isError.restype = ctypes.c_uint
    z.ZSTD_isError.argtypes = [ctypes.c_size_t]
    cap = z.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(cap)
    n = z.ZSTD_compress(out, cap, data, len(data), 3)
    if z.ZSTD_isError(n):
        raise RuntimeError("ZSTD_compress failed")
    return out.raw[:n]


def text(word, n=300):
    return (word * n).encode()


def make_folder(tmp):
    d = os.path.join(tmp, "mix")
    os.mkdir(d)
    with open(os.path.join(d, "a.txt"), "wb") as f:
        f.write(text("plain prose about the weather today. "))
    with open(os.path.join(d, "b.txt.gz"), "wb") as f:
        f.write(gzip.compress(text("license: permission is granted. ")))
    with open(os.path.join(d, "c.log.xz"), "wb") as f:
        f.write(lzma.compress(text("changelog: fixed the parser. ")))
    with open(os.path.join(d, "d.h.zst"), "wb") as f:
        f.write(zstd_compress(text("#define HEADER_VALUE 42\n")))
    with open(os.path.join(d, "e.txt"), "wb") as f:  # gzip inside, a plain name: the magic decides
        f.write(gzip.compress(text("misnamed gzip text. ")))
    with open(os.path.join(d, "z.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4)
    os.symlink("a.txt", os.path.join(d, "link.txt"))
    os.link(os.path.join(d, "a.txt"), os.path.join(d, "hard.txt"))
    return d


def test_folder(tmp):
    d = make_folder(tmp)
    out = os.path.join(tmp, "run-strict")
    rc, so, se = moe("train", "--data", d, "--out", out, *TINY)
    lines = [l for l in se.splitlines() if l.strip() and "warning: --k" not in l]
    ck.check("binary_file_error_without_skip_bad",
             rc == 1 and len(lines) == 1 and "z.bin" in lines[0] and "binary" in lines[0] and
             "--skip-bad" in lines[0],
             "rc %d, stderr %r" % (rc, se))
    out = os.path.join(tmp, "run-skip")
    rc, so, se = moe("train", "--data", d, "--out", out, "--skip-bad", *TINY)
    if not ck.check("folder_with_skip_bad_trains", rc == 0, "rc %d: %s" % (rc, se.strip()[-400:])):
        return
    ck.check("binary_file_skipped_with_warning",
             any("warning" in l and "skipped" in l and "z.bin" in l for l in se.splitlines()), se)
    ck.check("links_read_once",
             "link.txt is the same file as" in se and "hard.txt is the same file as" in se, se)
    val = [l for l in so.splitlines() if l.startswith("validation:")]
    names = ["a.txt", "b.txt.gz", "c.log.xz", "d.h.zst", "e.txt"]
    ck.check("validation_from_every_source",
             len(val) == 1 and "from 5 of 5 sources" in val[0] and all(n in val[0] for n in names) and
             "link.txt" not in val[0] and "z.bin" not in val[0],
             "validation line %r" % val)
    # read once: the text is the five sources, not seven
    ck.check("summary_counts_each_file_once", "of 5 sources" in so, so)


def test_partial_utf8_and_vocab(tmp):
    p = os.path.join(tmp, "cut.txt")
    with open(p, "wb") as f:
        f.write("caf\u00e9 au lait, na\u00efve. ".encode() * 200 + b"\xe2\x82")
    out = os.path.join(tmp, "run-utf8")
    rc, so, se = moe("train", "--data", p, "--out", out, *TINY, "--vocab", "256")
    ck.check("partial_utf8_at_eof_read_with_warning",
             rc == 0 and "middle of a UTF-8 character" in se and "cut.txt" in se, "rc %d: %s" % (rc, se))
    ck.check("vocab_256_accepted", rc == 0 and "vocab=258" in so and "256 bytes alone" in se,
             "rc %d: %s %s" % (rc, so[-300:], se))


def inspect_keys(path):
    rc, so, se = moe("inspect", path)
    keys = {}
    for l in so.splitlines():
        parts = l.split()
        if len(parts) >= 3 and parts[0].startswith("moe.router."):
            keys[parts[0]] = parts[2]
    return keys


def train_model(tmp, tag, *args):
    """(model file bytes, moe.router.* keys, stdout) of a tiny run, or (None, stderr, stdout)."""
    out = os.path.join(tmp, "run-" + tag)
    rc, so, se = moe("train", "--out", out, *TINY, *args)
    if rc != 0:
        return None, se, so
    with open(os.path.join(out, "model.gguf"), "rb") as f:
        return f.read(), inspect_keys(os.path.join(out, "model.gguf")), so


def test_preset_order(tmp):
    a, ka, _ = train_model(tmp, "shared-first", "--router", "shared", "--expert-dff", "24")
    b, kb, _ = train_model(tmp, "shared-last", "--expert-dff", "24", "--router", "shared")
    ck.check("preset_order_shared_expert_dff",
             a is not None and a == b and ka.get("moe.router.shared_d_ff") == "24",
             "files equal: %s; keys %r vs %r" % (a == b, ka, kb))
    a, ka, _ = train_model(tmp, "aux-first", "--aux", "0", "--router", "softmax")
    b, kb, _ = train_model(tmp, "aux-last", "--router", "softmax", "--aux", "0")
    ck.check("preset_order_aux_0_kept",
             a is not None and a == b and ka.get("moe.router.aux_loss_coef") == "0",
             "files equal: %s; keys %r vs %r" % (a == b, ka, kb))
    a, ka, so = train_model(tmp, "k-first", "--k", "2", "--router", "switch")
    ck.check("preset_explicit_k_wins", a is not None and "top-2" in so and ka.get("moe.router.jitter") == "0.01",
             "keys %r; %s" % (ka, so[:300]))


def test_k1_warning(tmp):
    out = os.path.join(tmp, "run-k1")
    rc, so, se = moe("train", "--out", out, *TINY, "--k", "1")
    ck.check("k1_renormalised_warns",
             rc == 0 and "warning: --k 1" in se and "no gradient" in se and "--renorm 0" in se,
             "rc %d: %s" % (rc, se))
    for tag, extra in (("renorm0", ["--k", "1", "--renorm", "0"]), ("switch", ["--router", "switch"]),
                       ("k2", [])):
        rc, so, se = moe("train", "--out", os.path.join(tmp, "run-k1-" + tag), *TINY, *extra)
        ck.check("k1_no_warning_%s" % tag, rc == 0 and "warning: --k" not in se, "rc %d: %s" % (rc, se))


def test_starved_reported(tmp):
    out = os.path.join(tmp, "run-starved")
    rc, so, se = moe("train", "--out", out, *TINY, "--steps", "2", "--eval-every", "1", "--eval-batches", "1")
    routing = []
    try:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            routing = [json.loads(l) for l in f if '"routing"' in l]
    except OSError:
        pass
    layers = [l for r in routing for l in r["routing"]["layers"]]
    ok = rc == 0 and "starved" in so and layers and all(
        "starved_experts" in l and l["starved_experts"] == sum(
            1 for x in l["load"] if x < 0.25 * sum(l["load"]) / len(l["load"])) for l in layers)
    ck.check("starved_experts_reported", ok, "rc %d; layers %r; %s" % (rc, layers[:2], se[-300:]))


def main():
    if not os.access(MOE, os.X_OK):
        print("%s test_train_cli: no moe binary at %s (set MOE_BIN)" % ("FAIL" if CI else "SKIPPED", MOE))
        return 1 if CI else 0
    tmp = tempfile.mkdtemp(prefix="moe-train-cli-")
    try:
        test_folder(tmp)
        test_partial_utf8_and_vocab(tmp)
        test_preset_order(tmp)
        test_k1_warning(tmp)
        test_starved_reported(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    n, failed = ck.counts()
    print("# test_train_cli: %d checks, %d failed" % (n, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
