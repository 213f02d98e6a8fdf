#!/usr/bin/env python3
"""study_timing.py RUNS [NAME...] [--steps N] [--rounds R] [--threads T]:
seconds per training step of each configuration of scripts/study_run.sh,
measured apart from the study's runs, interleaved so that every
configuration sees the same machine.

The study's own runs are timed on a shared machine, two at a time, with
evaluations in between: their wall clocks measure the load as much as moe.
Here each configuration continues its finished run (a copy of RUNS/NAME,
`moe train --resume COPY --steps S+N`, no evaluation, no checkpoint) for N
(default 20) steps at T (default 1) threads, one configuration after
another, round-robin, R (default 3) rounds. A configuration's time per step
is the median of its per-step wall-clock deltas in a round (the first step
after loading is left out). Its figure (s_per_step) is the fastest of the
rounds: on a shared machine other work only ever adds time, so the fastest
round is the best estimate of the configuration's own cost; the median
over the rounds is written too. --append adds the rounds to those already
in RUNS/timing.json (several sessions of rounds, one figure).
Continuing the trained run times the routing the configuration ends with
(its imbalance, its dropped tokens), not that of step 1.

Run it as `echo -20 > /proc/self/autogroup; scripts/study_timing.py ...`
(the priority of this session over the others on a shared machine; the
script also tries it itself). Prints a Markdown table and writes
RUNS/timing.json ({"name": {"s_per_step": ..., "rounds": [...]}, ...,
"_conditions": [{...}, ...]}) for scripts/study_table.py.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MOE = os.environ.get("MOE", "build/moe")
ORDER = ["dense", "top2", "nobal", "top1", "ec", "sigmoid", "fine_shared", "topp", "cap1.0", "cap1.25", "cap2.0",
         "e16", "e32", "fine_k8", "fine64_k8"]


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        v = args[i + 1]
        del args[i:i + 2]
        return type(default)(v)
    return default


def done_steps(run):
    last = 0
    for line in open(os.path.join(run, "metrics.jsonl")):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "loss" in r and "step" in r:
            last = max(last, r["step"])
    return last


def time_once(run, n, threads, tmp):
    """median seconds per step of n steps continuing a copy of run"""
    work = os.path.join(tmp, "run")
    shutil.rmtree(work, ignore_errors=True)
    os.mkdir(work)
    for f in ("state.gguf", "model.gguf", "tokens.bin", "metrics.jsonl", "sources.txt"):
        if os.path.exists(os.path.join(run, f)):
            shutil.copy(os.path.join(run, f), work)
    s0 = done_steps(work)
    env = dict(os.environ, OMP_WAIT_POLICY="passive")
    r = subprocess.run([MOE, "--threads", str(threads), "train", "--resume", work, "--steps", str(s0 + n),
                        "--eval-every", str(10 * (s0 + n)), "--save-every", "0", "--quiet"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    if r.returncode != 0:
        raise RuntimeError("%s: moe train --resume failed: %s" % (run, r.stderr.decode()[-400:]))
    walls = []
    for line in open(os.path.join(work, "metrics.jsonl")):
        try:
            x = json.loads(line)
        except ValueError:
            continue
        if "loss" in x and x.get("step", 0) > s0:
            walls.append(x["wall"])
    deltas = [b - a for a, b in zip(walls, walls[1:])]   # the first step (after loading) left out
    if not deltas:
        raise RuntimeError("%s: no steps timed" % run)
    return statistics.median(deltas)


def main():
    args = sys.argv[1:]
    n = opt(args, "--steps", 20)
    rounds = opt(args, "--rounds", 3)
    threads = opt(args, "--threads", 1)
    append = "--append" in args
    if append:
        args.remove("--append")
    if not args:
        print(__doc__)
        return 2
    runs = args[0]
    names = args[1:] or [x for x in ORDER if os.path.exists(os.path.join(runs, x, "state.gguf"))]
    names += [x for x in sorted(os.listdir(runs)) if not args[1:] and x not in names and
              os.path.exists(os.path.join(runs, x, "state.gguf"))]
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write("-20")
    except OSError:
        pass
    res = {x: [] for x in names}
    old = {}
    if append and os.path.exists(os.path.join(runs, "timing.json")):
        old = json.load(open(os.path.join(runs, "timing.json")))
        for x in names:
            res[x] = list(old.get(x, {}).get("rounds", []))
    t0 = time.time()
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for x in names:
                res[x].append(time_once(os.path.join(runs, x), n, threads, tmp))
                print("round %d %-12s %.4f s/step" % (r + 1, x, res[x][-1]), file=sys.stderr)
    out = {x: {"s_per_step": min(v), "median": statistics.median(v), "rounds": v} for x, v in res.items()}
    out["_conditions"] = old.get("_conditions", []) if isinstance(old.get("_conditions"), list) else \
        ([old["_conditions"]] if "_conditions" in old else [])
    out["_conditions"].append({"steps_per_round": n, "rounds": rounds, "threads": threads,
                          "loadavg_start": load0, "loadavg_end": os.getloadavg(),
                          "seconds": round(time.time() - t0, 1), "cpus": os.cpu_count(),
                          "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    tmpf = os.path.join(runs, "timing.json.tmp")
    with open(tmpf, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmpf, os.path.join(runs, "timing.json"))
    print("| config | s/step (fastest round) | median of rounds | rounds (each the median of %d steps, %d thread%s) |" %
          (n, threads, "" if threads == 1 else "s"))
    print("|---|---|---|---|")
    for x in names:
        print("| %s | %.3f | %.3f | %s |" % (x, out[x]["s_per_step"], out[x]["median"],
                                            " ".join("%.3f" % v for v in res[x])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
