#!/usr/bin/env python3
"""study_table.py OUT CORPUS [--eval-bytes N]: the tables of docs/STUDY.md
from the runs of scripts/study_run.sh (OUT/NAME/metrics.jsonl, model.gguf)
and the held-out files of scripts/study_corpus.sh (CORPUS/heldout/*.txt).

Per configuration: final validation loss; steps and wall seconds to reach
the dense run's final validation loss (linear interpolation between
evaluations; "-" when never reached) and their ratios to dense's; median
tokens/s (second half); dropped fraction, max-violation and dead experts of
the last evaluation (mean / max over layers); I(domain; expert) on the
held-out files (the routing of `moe route --json` on each domain's first
--eval-bytes bytes, counts pooled per layer, mean over layers); bits per
byte per domain (`moe eval` on the same prefixes). Prints Markdown.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

MOE = os.environ.get("MOE", "build/moe")


def read_metrics(d):
    steps, val, route, evr = [], [], [], []
    for line in open(os.path.join(d, "metrics.jsonl")):
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if "loss" in r and "step" in r:
            steps.append(r)
        elif "val_loss" in r:
            val.append((r["step"], r["val_loss"]))
        elif "routing" in r:
            route.append(r)
        elif "eval_routing" in r:
            evr.append(r)
    wall = {s["step"]: s.get("wall", float("nan")) for s in steps}
    return steps, [(s, v, wall.get(s, float("nan"))) for s, v in val], route, evr


def reach(val, target):
    """(step, wall) where the validation curve first reaches target, interpolated."""
    prev = None
    for s, v, w in val:
        if v <= target:
            if prev is None or prev[1] == v:
                return s, w
            s0, v0, w0 = prev
            f = (v0 - target) / (v0 - v)
            return s0 + f * (s - s0), w0 + f * (w - w0)
        prev = (s, v, w)
    return None, None


def mi(counts):
    N = sum(sum(r) for r in counts)
    if N == 0:
        return 0.0
    ps = [sum(r) / N for r in counts]
    E = len(counts[0])
    pe = [sum(r[e] for r in counts) / N for e in range(E)]
    return sum(c / N * math.log2(c / N / (ps[s] * pe[e])) for s, r in enumerate(counts)
               for e, c in enumerate(r) if c > 0)


def prefixes(corpus, n, tmp):
    out = {}
    hd = os.path.join(corpus, "heldout")
    for f in sorted(os.listdir(hd)):
        b = open(os.path.join(hd, f), "rb").read()[:n]
        cut = b.rfind(b"\n")
        b = b[:cut + 1] if cut > 0 else b
        p = os.path.join(tmp, f)
        open(p, "wb").write(b.decode("utf-8", "ignore").encode())
        out[f[:-4]] = p
    return out


def routed_mi(model, files):
    per_layer = {}
    doms = sorted(files)
    for di, dname in enumerate(doms):
        r = subprocess.run([MOE, "route", model, "-f", files[dname], "--json", "--window", "128"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            return float("nan")
        for line in r.stdout.decode().splitlines():
            t = json.loads(line)
            if "i" not in t:
                continue
            for ly in t["layers"]:
                tab = per_layer.setdefault(ly["layer"], {})
                row = tab.setdefault(di, {})
                for e in ly["experts"]:
                    row[e] = row.get(e, 0) + 1
    vals = []
    for tab in per_layer.values():
        E = 1 + max(e for row in tab.values() for e in row)
        vals.append(mi([[tab.get(d, {}).get(e, 0) for e in range(E)] for d in range(len(doms))]))
    return sum(vals) / len(vals) if vals else float("nan")


def bpb(model, path):
    r = subprocess.run([MOE, "eval", model, path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    for line in r.stdout.decode().splitlines():
        if line.startswith("{"):
            return json.loads(line).get("bits_per_byte", float("nan"))
    return float("nan")


def fmt(x, f="%.3f"):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f % x


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    out, corpus = sys.argv[1], sys.argv[2]
    nbytes = int(sys.argv[sys.argv.index("--eval-bytes") + 1]) if "--eval-bytes" in sys.argv else 20000
    names = [n for n in ["dense", "top2", "nobal", "top1", "ec", "sigmoid", "fine_shared", "topp", "cap1.0",
                         "cap1.25", "cap2.0"] if os.path.exists(os.path.join(out, n, "metrics.jsonl"))]
    data = {n: read_metrics(os.path.join(out, n)) for n in names}
    target = data["dense"][1][-1][1] if "dense" in data and data["dense"][1] else None
    d_step, d_wall = (data["dense"][1][-1][0], data["dense"][1][-1][2]) if target is not None else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        files = prefixes(corpus, nbytes, tmp)
        doms = sorted(files)
        print("| config | final val loss | steps to dense final | ratio | wall s to dense final | ratio | tokens/s | "
              "dropped | max-viol (mean/max) | dead (max) | I(domain; expert) bits |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        rows_bpb = []
        for n in names:
            steps, val, route, evr = data[n]
            s, w = reach(val, target) if target is not None else (None, None)
            tps = sorted(x["tokens_per_s"] for x in steps[len(steps) // 2:]) or [float("nan")]
            lays = route[-1]["routing"]["layers"] if route else []
            drop = sum(l["dropped_fraction"] for l in lays) / len(lays) if lays else float("nan")
            mv = [l["max_violation"] for l in lays]
            dead = max([l["dead_experts"] for l in lays], default=float("nan"))
            model = os.path.join(out, n, "model.gguf")
            m = routed_mi(model, files) if n != "dense" else float("nan")
            print("| %s | %s | %s | %s | %s | %s | %.0f | %s | %s | %s | %s |" % (
                n, fmt(val[-1][1] if val else None), fmt(s, "%.0f"), fmt(s / d_step if s and d_step else None, "%.2f"),
                fmt(w, "%.0f"), fmt(w / d_wall if w and d_wall else None, "%.2f"), tps[len(tps) // 2],
                fmt(drop), "%s / %s" % (fmt(sum(mv) / len(mv) if mv else None, "%.2f"), fmt(max(mv) if mv else None, "%.2f")),
                fmt(dead, "%.0f"), fmt(m)))
            rows_bpb.append((n, [bpb(model, files[d]) for d in doms]))
        print()
        print("Bits per byte on the held-out prefix of each domain (`moe eval`):")
        print()
        print("| config | " + " | ".join(doms) + " |")
        print("|---|" + "---|" * len(doms))
        for n, v in rows_bpb:
            print("| %s | %s |" % (n, " | ".join(fmt(x) for x in v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
