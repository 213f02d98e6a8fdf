"""test_dist.py: expert- and data-parallel training over MPI (docs/SCALING.md)
equals the one-process run.

Tiny models (2-3 blocks, d = 32, 4 experts, 4 sequences of 32 tokens), 30
steps each, one thread per rank. For each routing setup the per-step loss of
`mpirun -np P moe train --expert-parallel EP` at P = 2 (EP 2), P = 4 (EP 4)
and P = 4 (EP 2 x DP 2) is compared with the one-process `moe train`:
  dist/<setup>/P<p>-EP<ep>  max relative loss difference <= 1e-5 per step
Setups: dropless top-2 (softmax, aux and z losses); capacity 1.0 with drops
by position and by score; a gated shared expert; the sigmoid gate with the
aux-loss-free bias; a mixed model (a dense block, then MoE blocks).
The bound: the ranks sum the replicated parameters' gradients in another
order than one process's GEMM does (fp32, ~1e-7 relative per step). A
routing decision that sits on a tie within that rounding can flip, after
which two fp32 runs drift apart like any two with different reduction
orders; the seeds here are ones without such a tie in 30 steps (checked on
this machine), which is why the bound is per step and not "bitwise".
Also:
  dist/overlap/P2-EP2, P4-EP2  dropless top-2 with --overlap (each block's
                      gradient all-reduce started during the backward)
                      against the one-process run, the same bound
  dist/resume         a run saved at P = 4 (step 10), resumed at P = 2
                      (to 20), at P = 1 (to 30) and at P = 4 (to 40) follows
                      the one-process 40-step run within the same bound
  dist/agree          ranks started with different configurations exit
                      non-zero with one message naming the rank and field
  dist/shard-check    E % EP != 0 is a clear error on every rank
  dist/kill           a rank killed with SIGKILL mid-step: mpirun exits
                      non-zero within 30 s naming the failed rank, rank 0
                      names the step it was in; the checkpoint files are
                      byte-identical to before
  dist/stall          rank 1 stopped (SIGSTOP: alive, connections open)
                      mid-step with --dist-timeout 3: rank 0's watchdog
                      names itself, the step and the collective, mpirun
                      exits non-zero within 30 s, the checkpoint files
                      are byte-identical
  dist/interrupt/*    SIGINT to mpirun mid-run: every rank gone within
                      30 s, a new checkpoint that resumes (with a 30 s
                      SIGKILL grace) or, with Open MPI's 1 s, that or
                      the previous one byte-identical (interrupt_checks)
  dist/infer/ARCH/Pp  `moe run --expert-parallel P` (P = 2, 4) of moe synth's
                      mixtral, qwen2moe and deepseek models: the prompt's
                      last logits within 1e-5 relative of one process's,
                      8 greedy tokens identical
  dist/infer/resident each rank's resident memory at P = 4 under 0.75 of
                      one process's (a 100 MB model, 96 MB of experts)
  dist/train/resident training a model whose experts dominate (2 blocks of 8
                      experts, d 128, expert d_ff 1024: 25 MB of expert
                      weights, 101 MB with their gradients and AdamW
                      moments) at P = 1, 2 and 4 (EP = P): each rank holds
                      1/EP of the experts (its report), and every rank's
                      anonymous resident memory at P = EP is below one
                      process's by at least half the expert state it no
                      longer holds: (1 - 1/EP) x 101 MB / 2
SKIPPED when mpirun is missing or the library was built without MPI, except
under CI (the environment variable CI set), where that is a FAIL.
"""
import ctypes
import glob
import hashlib
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dist_util  # noqa: E402
from dist_util import env, report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
LIB = os.environ.get("MOE_LIB") or os.path.join(ROOT, "build", "libmoe.so")
NAME = "dist"
BOUND = 1e-5

BASE = ["--steps", "30", "--batch", "4", "--ctx", "32", "--d", "32", "--layers", "2", "--heads", "2",
        "--kv-heads", "1", "--experts", "4", "--k", "2", "--expert-dff", "32", "--vocab", "300",
        "--corpus-bytes", "60000", "--eval-every", "0", "--seed", "3", "--lr", "3e-3", "--warmup", "3"]

SETUPS = [
    ("dropless-top2", []),
    ("capacity-position", ["--capacity", "1.0"]),
    ("capacity-score", ["--capacity", "1.0", "--drop", "score"]),
    ("shared", ["--router", "shared", "--seed", "4"]),
    ("sigmoid-bias", ["--router", "sigmoid"]),
    ("mixed-dense", ["--layers", "3", "--dense-first", "1", "--dff", "64"]),
]
RANKS = [(2, 2), (4, 4), (4, 2)]  # (P, EP)


def skip_or_fail(why):
    dist_util.skip_or_fail(NAME, why)


def mpirun(p):
    return ["mpirun", "--oversubscribe", "--allow-run-as-root", "-np", str(p),
            "-x", "OMP_NUM_THREADS", "-x", "ASAN_OPTIONS"]


def run(cmd, timeout=300):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, env=env())
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def train(out, args, p=0, ep=0, extra=()):
    cmd = ([] if p == 0 else mpirun(p)) + [MOE, "--threads", "1", "train"] + list(args) + list(extra)
    if p:
        cmd += ["--expert-parallel", str(ep)]
    return run(cmd + ["--quiet"] + (["--out", out] if "--resume" not in extra else []))


def losses(d):
    out = []
    with open(os.path.join(d, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "loss" in j:
                out.append((j["step"], j["loss"]))
    return out


def compare(name, ref, got):
    if len(ref) != len(got) or [s for s, _ in ref] != [s for s, _ in got]:
        report(name, False, "steps %s vs %s" % ([s for s, _ in ref][:5], [s for s, _ in got][:5]))
        return
    worst, at = 0.0, 0
    for (s, a), (_, b) in zip(ref, got):
        r = abs(a - b) / max(abs(a), 1e-30)
        if r > worst:
            worst, at = r, s
    report(name, worst <= BOUND, "step %d: relative loss difference %.3g > %g" % (at, worst, BOUND),
           "%d steps, max rel %.2g" % (len(ref), worst))


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rank_pid(rank, marker):
    """The pid of the moe process of this rank whose command line holds marker."""
    for envf in glob.glob("/proc/[0-9]*/environ"):
        pid = envf.split("/")[2]
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            if not cmd or os.path.basename(cmd[0]) != b"moe" or marker.encode() not in cmd:
                continue
            with open(envf, "rb") as f:
                if (b"OMPI_COMM_WORLD_RANK=%d" % rank) in f.read().split(b"\0"):
                    return int(pid)
        except OSError:
            continue
    return None


def read_f32(path):
    import array
    a = array.array("f")
    with open(path, "rb") as f:
        a.frombytes(f.read())
    return a


def infer_checks(tmp):
    """Expert-parallel inference: logits and greedy tokens of mpirun -np P
    moe run --expert-parallel P equal one process's; resident memory per rank."""
    prompt = "Hello world, the experts"
    for arch in ("mixtral", "qwen2moe", "deepseek"):
        model = os.path.join(tmp, arch + ".gguf")
        rc, _, err = run([MOE, "synth", model, "--arch", arch, "--seed", "5"])
        if rc:
            report("%s/infer/%s" % (NAME, arch), False, "moe synth: " + err[-300:])
            continue
        base = [MOE, "--threads", "1", "run", model, "-p", prompt, "-n", "8", "--temp", "0"]
        rc, text1, err = run(base + ["--logits-out", model + ".l1"])
        if rc:
            report("%s/infer/%s" % (NAME, arch), False, "one process: " + err[-300:])
            continue
        l1 = read_f32(model + ".l1")
        for p in (2, 4):
            rc, text, err = run(mpirun(p) + base + ["--logits-out", model + ".l%d" % p, "--expert-parallel", str(p)])
            name = "%s/infer/%s/P%d" % (NAME, arch, p)
            if rc:
                report(name, False, "mpirun exited %d: %s" % (rc, err[-300:]))
                continue
            lp = read_f32(model + ".l%d" % p)
            scale = max(abs(x) for x in l1)
            rel = max(abs(a - b) for a, b in zip(l1, lp)) / scale if len(lp) == len(l1) else float("inf")
            report(name, rel <= BOUND and text == text1,
                   "logits max rel %.3g (bound %g), greedy text %s" % (rel, BOUND, "same" if text == text1 else
                                                                      "differs: %r vs %r" % (text1, text)),
                   "%d logits, max rel %.2g, greedy tokens identical" % (len(l1), rel))
    # resident memory: a 100 MB model (96 MB of experts)
    if "sanitize" in MOE:
        print("SKIPPED %s/infer/resident: the sanitizer build (ASan's shadow memory counts in the RSS)" % NAME)
        return
    model = os.path.join(tmp, "big.gguf")
    rc, _, err = run([MOE, "synth", model, "--arch", "mixtral", "--d", "256", "--dff", "1024", "--experts", "8",
                      "--layers", "4", "--seed", "5"])
    rss = {}
    for p in (1, 4):
        if rc:
            break
        rc, _, err = run(mpirun(p) + [MOE, "--threads", "1", "run", model, "-p", prompt, "-n", "4", "--temp", "0",
                                      "--expert-parallel", str(p)])
        rss[p] = [float(l.split("resident memory")[1].split()[0]) for l in err.splitlines() if "resident memory" in l]
    ok = rc == 0 and len(rss.get(1, [])) == 1 and len(rss.get(4, [])) == 4
    report("%s/infer/resident" % NAME, ok and max(rss[4]) < 0.75 * rss[1][0],
           "rc %d, resident MB %s: %s" % (rc, rss, err[-300:]),
           "MB per rank: P=1 %s, P=4 %s (experts 96 MB)" % (rss.get(1), rss.get(4)))


def train_resident_checks(tmp):
    """Sharded expert memory in training: each rank allocates only its
    experts' parameters, gradients and moments."""
    name = "%s/train/resident" % NAME
    if "sanitize" in MOE:
        print("SKIPPED %s: the sanitizer build (ASan's shadow memory counts in the RSS)" % name)
        return
    args = ["--steps", "2", "--batch", "4", "--ctx", "32", "--d", "128", "--layers", "2", "--heads", "2",
            "--kv-heads", "1", "--experts", "8", "--k", "2", "--expert-dff", "1024", "--vocab", "300",
            "--corpus-bytes", "60000", "--eval-every", "0", "--seed", "3"]
    # expert state: 2 blocks x 3 matrices x 8 experts x 1024 x 128 floats, x 4
    # (parameters, gradients, two moments) x 4 bytes
    state_mb = 2 * 3 * 8 * 1024 * 128 * 4 * 4 / 2 ** 20
    anon, held, ok, why = {}, {}, True, ""
    for p in (1, 2, 4):
        rc, _, err = train(os.path.join(tmp, "resident-P%d" % p), args, p, p)
        lines = [l for l in err.splitlines() if "resident memory" in l and "anonymous" in l]
        if rc or len(lines) != p:
            ok, why = False, "P=%d: rc %d, %d reports: %s" % (p, rc, len(lines), err[-300:])
            break
        anon[p] = [float(l.split("anonymous")[1].split()[0]) for l in lines]
        held[p] = [float(l.split("holds")[1].split("M")[0]) for l in lines]
    if ok:
        for p in (2, 4):
            want = (1 - 1.0 / p) * state_mb / 2
            # parameters held: the replicated ones plus 1/EP of the experts
            experts_m = 2 * 3 * 8 * 1024 * 128 / 1e6
            if any(abs(h - (held[1][0] - experts_m * (1 - 1.0 / p))) > 0.01 for h in held[p]):
                ok, why = False, "P=%d: parameters held %s, expected %.2fM each" % (
                    p, held[p], held[1][0] - experts_m * (1 - 1.0 / p))
            elif max(anon[p]) > anon[1][0] - want:
                ok, why = False, "P=%d: anonymous resident MB per rank %s, one process %.1f: expected every " \
                    "rank below %.1f (%.1f MB less)" % (p, anon[p], anon[1][0], anon[1][0] - want, want)
    report(name, ok, why, "anonymous resident MB: P=1 %s, P=2 %s, P=4 %s; expert state %.0f MB" % (
        anon.get(1), anon.get(2), anon.get(4), state_mb))
def checkpoint_step(d):
    """The step d's checkpoint holds (a resume with nothing left to train says it), or None."""
    rc, out, err = run([MOE, "--threads", "1", "train", "--resume", d, "--steps", "1"])
    m = re.search(r"is at step (\d+)", out)
    return int(m.group(1)) if rc == 0 and m else None


def stall_check(d):
    """A rank that stops answering (SIGSTOP: alive, its connections open,
    like a host whose link went down) is found by the others' watchdog."""
    name = "%s/stall" % NAME
    before = {f: sha(os.path.join(d, f)) for f in ("model.gguf", "state.gguf")}
    cmd = mpirun(2) + [MOE, "--threads", "1", "train", "--resume", d, "--steps", "1000000", "--save-every", "0",
                       "--expert-parallel", "2", "--dist-timeout", "3", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
    pid, t_start = None, time.time()
    while pid is None and time.time() - t_start < 30 and proc.poll() is None:
        time.sleep(0.2)
        pid = rank_pid(1, d)
    if pid is None:
        proc.kill()
        proc.communicate()
        report(name, False, "rank 1 of the resumed run never appeared")
        return
    time.sleep(1.0)  # well inside the steps
    os.kill(pid, signal.SIGSTOP)
    t_stop = time.time()
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        report(name, False, "the job was still running 30 s after a rank stopped answering")
        return
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    dt = time.time() - t_stop
    err = err.decode("utf-8", "replace")
    after = {f: sha(os.path.join(d, f)) for f in before}
    m = re.search(r"moe: rank 0: no progress for \d+ s in ([\w() -]+) \(([a-z ]*step) (\d+)\)", err)
    report(name, proc.returncode != 0 and m and after == before,
           "rc %d, watchdog line %s, files %s, stderr: %s" %
           (proc.returncode, bool(m), "same" if after == before else "CHANGED", err[-400:]),
           "the job ended %.1f s after rank 1 stopped, rc %d; %s" % (dt, proc.returncode, m.group(0) if m else ""))


def interrupt_checks(d):
    """SIGINT to mpirun mid-run: it sends SIGTERM to every rank (then SIGKILL
    after --mca odls_base_sigkill_timeout seconds, default 1). The ranks
    agree to stop after the same step; rank 0 saves; all leave together.
      dist/interrupt/save       with a 5 s grace: every rank gone within
                                30 s, mpirun non-zero, the checkpoint a
                                new one at the announced step, which resumes
      dist/interrupt/default    Open MPI's 1 s grace: gone within 30 s; the
                                checkpoint either byte-identical to before or
                                a new one that resumes"""
    for label, grace in (("save", ["--mca", "odls_base_sigkill_timeout", "5"]), ("default", [])):
        name = "%s/interrupt/%s" % (NAME, label)
        before = {f: sha(os.path.join(d, f)) for f in ("model.gguf", "state.gguf")}
        step0 = checkpoint_step(d)
        cmd = (mpirun(2) + grace + [MOE, "--threads", "1", "train", "--resume", d, "--steps", "1000000",
                                    "--save-every", "0", "--expert-parallel", "2", "--quiet"])
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        stepping, t_start = False, time.time()
        while not stepping and time.time() - t_start < 60 and proc.poll() is None:
            time.sleep(0.2)  # until rank 0 logs a step of this run: inside the steps
            with open(os.path.join(d, "metrics.jsonl")) as f:
                stepping = any('"step":%d,"loss"' % (step0 + 1) in l for l in f) if step0 else False
        if not stepping:
            proc.kill()
            proc.communicate()
            report(name, False, "the resumed run (from step %s) logged no step in 60 s" % step0)
            continue
        proc.send_signal(signal.SIGINT)
        t_int = time.time()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            report(name, False, "mpirun was still running 30 s after SIGINT")
            continue
        while time.time() - t_int < 30 and (rank_pid(0, d) or rank_pid(1, d)):
            time.sleep(0.2)
        dt = time.time() - t_int
        gone = not rank_pid(0, d) and not rank_pid(1, d)
        err = err.decode("utf-8", "replace")
        after = {f: sha(os.path.join(d, f)) for f in before}
        step1 = checkpoint_step(d)
        m = re.search(r"terminated at step (\d+): checkpoint saved", err)
        if after == before:  # the grace ran out (or no step was done: then it says so)
            saved = "unchanged (step %s)" % step0
            ok_ckpt = step1 == step0 and (label == "default" or
                                          "terminated at step %s (the checkpoint of that step is saved)" % step0 in err)
            m = m or ok_ckpt
        else:
            saved = "new, step %s (was %s)" % (step1, step0)
            ok_ckpt = step1 is not None and step0 is not None and step1 > step0 and (m is None or
                                                                                   int(m.group(1)) == step1)
        ok = proc.returncode != 0 and gone and ok_ckpt and (label == "default" or m is not None)
        report(name, ok, "rc %d, ranks gone %s, checkpoint %s, stderr: %s" % (proc.returncode, gone, saved, err[-500:]),
               "mpirun rc %d; mpirun and every rank gone %.1f s after SIGINT; checkpoint %s" % (proc.returncode, dt, saved))


def main():
    if not shutil.which("mpirun"):
        skip_or_fail("mpirun not found (scripts/deps.sh installs openmpi-bin)")
    try:
        lib = ctypes.CDLL(LIB)
        if not lib.moe_dist_available():
            skip_or_fail("%s was built without MPI (mpicc missing; make MPI=1)" % LIB)
    except OSError as e:
        skip_or_fail("cannot load %s: %s" % (LIB, e))
    t0 = time.time()
    tmp = tempfile.mkdtemp(prefix="moe-dist-")
    refs = {}
    try:
        for name, extra in SETUPS:
            args = BASE + extra
            ref_dir = os.path.join(tmp, name + "-1")
            rc, out, err = train(ref_dir, args)
            if rc:
                report("%s/%s" % (NAME, name), False, "one-process run failed: %s" % err[-400:])
                continue
            ref = losses(ref_dir)
            refs[name] = ref
            for p, ep in RANKS:
                d = os.path.join(tmp, "%s-P%d-EP%d" % (name, p, ep))
                rc, out, err = train(d, args, p, ep)
                label = "%s/%s/P%d-EP%d" % (NAME, name, p, ep)
                if rc:
                    report(label, False, "mpirun exited %d: %s" % (rc, err[-400:]))
                    continue
                compare(label, ref, losses(d))

        # the gradients' all-reduce started block by block during the backward
        # (moe train --overlap): the same trajectory within the bound
        if "dropless-top2" in refs:
            for p, ep in ((2, 2), (4, 2)):
                d = os.path.join(tmp, "overlap-P%d-EP%d" % (p, ep))
                rc, out, err = train(d, BASE, p, ep, ["--overlap"])
                label = "%s/overlap/P%d-EP%d" % (NAME, p, ep)
                if rc:
                    report(label, False, "mpirun exited %d: %s" % (rc, err[-400:]))
                else:
                    compare(label, refs["dropless-top2"], losses(d))

        # each setup changes the computation (its options took effect)
        same = [(a, b) for a in refs for b in refs if a < b and refs[a] == refs[b]]
        report("%s/setups-differ" % NAME, len(refs) == len(SETUPS) and not same,
               "identical trajectories: %s" % same)

        # resume across rank counts: 4 -> 2 -> 1 -> 4
        args = BASE[:]
        args[1] = "40"
        ref_dir = os.path.join(tmp, "resume-ref")
        rc, _, err = train(ref_dir, args)
        d = os.path.join(tmp, "resume")
        chain = [(4, 4, ["--until", "10"], False), (2, 2, ["--until", "20"], True),
                 (0, 0, ["--until", "30"], True), (4, 2, [], True)]
        ok = rc == 0
        why = "reference run failed: " + err[-300:]
        for p, ep, until, resume in chain:
            if not ok:
                break
            if resume:
                rc, _, err = train(d, [], p, ep, ["--resume", d] + until)
            else:
                rc, _, err = train(d, args + until, p, ep)
            ok = rc == 0
            why = "P=%d %s: exited %d: %s" % (p or 1, "resume" if resume else "start", rc, err[-300:])
        if ok:
            compare("%s/resume-4-2-1-4" % NAME, losses(ref_dir), losses(d))
        else:
            report("%s/resume-4-2-1-4" % NAME, False, why)

        # every rank must agree before the first step
        d = os.path.join(tmp, "agree")
        cmd = (["mpirun", "--oversubscribe", "--allow-run-as-root", "-x", "OMP_NUM_THREADS", "-x", "ASAN_OPTIONS",
                "-np", "1", MOE, "--threads", "1", "train"] + BASE + ["--lr", "1e-3", "--expert-parallel", "2",
                "--quiet", "--out", d, ":", "-np", "1", MOE, "--threads", "1", "train"] + BASE +
               ["--lr", "2e-3", "--expert-parallel", "2", "--quiet", "--out", d])
        try:
            rc, out, err = run(cmd, timeout=120)
            report("%s/agree" % NAME, rc != 0 and "rank 1 disagrees with rank 0 on the configuration" in err
                   and "lr" in err, "rc %d, stderr: %s" % (rc, err[-400:]), err.strip().splitlines()[0][:120])
        except subprocess.TimeoutExpired:
            report("%s/agree" % NAME, False, "ranks with different configurations hung (120 s)")

        d = os.path.join(tmp, "shard")
        rc, out, err = train(d, BASE[:2] + ["--batch", "6"] + BASE[4:], 3, 3)
        report("%s/shard-check" % NAME, rc != 0 and "cannot be sharded evenly" in err and err.count("rank") >= 3,
               "rc %d, stderr: %s" % (rc, err[-400:]))

        # the per-source routing of validation (metrics.jsonl's eval_routing) is gathered in an
        # MPI run too, and equals one process's (counts within 1%: ties may fall otherwise)
        ev = BASE[:1] + ["10"] + BASE[2:BASE.index("--eval-every") + 1] + ["10"] + BASE[BASE.index("--eval-every") + 2:]
        got = {}
        for label, p, ep in (("one", 0, 0), ("mpi", 2, 2)):
            d = os.path.join(tmp, "evr-" + label)
            rc, out, err = train(d, ev, p, ep)
            got[label] = None
            if rc == 0:
                with open(os.path.join(d, "metrics.jsonl")) as f:
                    for line in f:
                        j = json.loads(line)
                        if "eval_routing" in j:
                            got[label] = j["eval_routing"]
        a, b = got["one"], got["mpi"]
        ok, why = a is not None and b is not None, "no eval_routing in %s" % ("one" if a is None else "mpi")
        if ok:
            ca = [x for l in a["layers"] for row in l["counts"] for x in row]
            cb = [x for l in b["layers"] for row in l["counts"] for x in row]
            diff = sum(abs(x - y) for x, y in zip(ca, cb))
            ok = (a["sources"] == b["sources"] and a["source_tokens"] == b["source_tokens"] and len(ca) == len(cb)
                  and sum(ca) > 0 and sum(ca) == sum(cb) and diff <= 0.01 * sum(ca))
            why = "sources %s / %s, tokens %s / %s, assignments %d / %d, differing %d" % (
                a["sources"], b["sources"], a["source_tokens"], b["source_tokens"], sum(ca), sum(cb), diff)
        report("%s/eval_routing" % NAME, ok, why)

        # a rank killed mid-step: the job ends, the checkpoint is untouched
        d = os.path.join(tmp, "resume")  # holds the 40-step checkpoint
        before = {f: sha(os.path.join(d, f)) for f in ("model.gguf", "state.gguf")}
        cmd = mpirun(2) + [MOE, "--threads", "1", "train", "--resume", d, "--steps", "1000000", "--save-every", "0",
                           "--expert-parallel", "2", "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env())
        pid, t_start = None, time.time()
        while pid is None and time.time() - t_start < 30 and proc.poll() is None:
            time.sleep(0.2)
            pid = rank_pid(1, d)
        if pid is None:
            proc.kill()
            report("%s/kill" % NAME, False, "rank 1 of the resumed run never appeared")
        else:
            time.sleep(1.0)  # well inside the steps
            os.kill(pid, signal.SIGKILL)
            t_kill = time.time()
            try:
                out, err = proc.communicate(timeout=30)
                dt = time.time() - t_kill
                err = err.decode("utf-8", "replace")
                after = {f: sha(os.path.join(d, f)) for f in before}
                left = [f for f in os.listdir(d) if f not in ("model.gguf", "state.gguf", "tokens.bin",
                                                              "metrics.jsonl", "sources.txt")]
                named = "rank 1" in err and ("signal 9" in err or "Killed" in err)
                # the survivor names the step it was in when mpirun ended it
                m = re.search(r"moe: rank 0: SIGTERM (?:in|after) [a-z ,-]*step (\d+)", err)
                report("%s/kill" % NAME, proc.returncode != 0 and named and m and after == before and not left,
                       "rc %d, dead rank named %s, step named %s, files %s, left over %s, stderr: %s" %
                       (proc.returncode, named, bool(m), "same" if after == before else "CHANGED", left, err[-400:]),
                       "all ranks ended %.1f s after the SIGKILL, rc %d; rank 1 named by mpirun, step %s by rank 0" %
                       (dt, proc.returncode, m.group(1) if m else "?"))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                report("%s/kill" % NAME, False, "the job was still running 30 s after a rank was killed")
        stall_check(d)
        interrupt_checks(d)
        infer_checks(tmp)
        train_resident_checks(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%s: %.1f s" % (NAME, time.time() - t0))
    sys.exit(1 if dist_util.failed() else 0)


if __name__ == "__main__":
    main()
