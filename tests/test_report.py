"""test_report.py: `moe report` and `moe route --html` pages, and the
records of metrics.jsonl they are drawn from.

A short MoE run on the built-in corpus (its five domains are the sources)
and a short dense run, in a temporary folder:
  - metrics.jsonl: a header (config, params total/active, FLOPs/token,
    hardware, threads), step lines with lr, grad norm, aux, z, tokens/s and
    wall time, and after each evaluation an eval_routing record whose
    source x expert counts add up to its loads and to tokens * k (dropless
    top-2), whose max-violation, dead experts and I(source; expert) equal
    the values recomputed here from the counts;
  - `moe train --report-every N` left DIR/report.html;
  - `moe report MOE DENSE -o X.html` and `moe route MODEL --html`: each page
    is well-formed XML (Python's XML parser), holds every expected figure id,
    has no external resource (no src/href to a URL, no <script src>), and
    headless Chromium renders it (--dump-dom holds every id; --screenshot
    gives a PNG that is not blank);
  - `moe report` of a folder without metrics.jsonl fails naming the file.
Chromium missing: SKIPPED, except under CI (env CI set), where it is a FAIL.
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE = os.environ.get("MOE_BIN") or os.path.join(ROOT, "build", "moe")
NAME = "test_report"
IN_CI = bool(os.environ.get("CI"))
failed = False


def ok(name):
    print("ok %s/%s" % (NAME, name))


def fail(name, why):
    global failed
    failed = True
    print("FAIL %s/%s: %s" % (NAME, name, why))


def check(name, cond, why=""):
    if cond:
        ok(name)
    else:
        fail(name, why)
    return cond


def moe(*args, timeout=300):
    r = subprocess.run([MOE, "--threads", "2"] + [str(a) for a in args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace")


def find_chromium():
    for n in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(n)
        if p:
            return p
    return None


def chromium_env():
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)  # make sanitize preloads ASan into the Python tests
    env.pop("ASAN_OPTIONS", None)
    env.setdefault("HOME", tempfile.gettempdir())
    return env


def chromium(exe, args, tmp):
    prof = tempfile.mkdtemp(dir=tmp)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=" + prof] + args
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, env=chromium_env())
    return r.returncode, r.stdout.decode("utf-8", "replace")


def png_pixels_vary(path):
    """(width, height, distinct colours, share of non-white pixels) of an
    8-bit RGB/RGBA PNG, decoded here (zlib + the five PNG filters)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, idat, w = 8, b"", 0
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        typ = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    if depth != 8 or ctype not in (2, 6):
        return None
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    prev = bytearray(stride)
    colours, nonwhite = set(), 0
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:
            for x in range(0, w, 4):
                px = bytes(line[x * bpp:x * bpp + 3])
                colours.add(px)
                if px != b"\xff\xff\xff":
                    nonwhite += 1
        prev = line
    sampled = ((h + 3) // 4) * ((w + 3) // 4)
    return w, h, len(colours), nonwhite / max(1, sampled)


def xml_ids(path):
    tree = ET.parse(path)  # raises on malformed XML
    ids = set()
    for el in tree.iter():
        i = el.get("id")
        if i:
            ids.add(i)
    return tree, ids


def no_external(path):
    text = open(path, encoding="utf-8").read()
    bad = re.findall(r'(?:src|href)\s*=\s*"(?:https?:|//|file:)[^"]*"', text)
    bad += re.findall(r"<script[^>]*\bsrc=", text)
    bad += re.findall(r"@import|url\(", text)
    return bad


def render_checks(tag, exe, page, want_ids, tmp):
    """XML, ids, no external resource; then Chromium's DOM and screenshot."""
    try:
        tree, ids = xml_ids(page)
        ok(tag + "/xml")
    except ET.ParseError as e:
        fail(tag + "/xml", "%s is not well-formed XML: %s" % (page, e))
        return
    missing = sorted(set(want_ids) - ids)
    check(tag + "/ids", not missing, "%s lacks ids %s" % (page, missing[:10]))
    svgs = [el for el in tree.iter() if el.tag.endswith("}svg")]
    check(tag + "/svg_ns", svgs and all(el.tag == "{http://www.w3.org/2000/svg}svg" for el in svgs),
          "inline <svg> without the SVG namespace")
    ext = no_external(page)
    check(tag + "/self_contained", not ext, "external references: %s" % ext[:5])
    if exe is None:
        return
    rc, dom = chromium(exe, ["--dump-dom", "file://" + page], tmp)
    dom_ids = set(re.findall(r'\bid="([^"]+)"', dom))
    miss = sorted(set(want_ids) - dom_ids)
    check(tag + "/chromium_dom", rc == 0 and not miss,
          "chromium --dump-dom: rc %d, ids missing %s" % (rc, miss[:10]))
    png = os.path.join(tmp, tag.replace("/", "_") + ".png")
    rc, _ = chromium(exe, ["--screenshot=" + png, "--window-size=900,1100", "file://" + page], tmp)
    if not os.path.exists(png):
        fail(tag + "/chromium_png", "chromium --screenshot wrote no PNG (rc %d)" % rc)
        return
    st = png_pixels_vary(png)
    check(tag + "/chromium_png", st is not None and st[2] >= 8 and st[3] > 0.01,
          "the PNG looks blank: %s (width, height, colours, non-white share)" % (st,))


def mi_bits(counts):
    N = sum(sum(r) for r in counts)
    if N <= 0:
        return 0.0
    ps = [sum(r) / N for r in counts]
    pe = [sum(r[e] for r in counts) / N for e in range(len(counts[0]))]
    mi = 0.0
    for s, r in enumerate(counts):
        for e, c in enumerate(r):
            if c > 0:
                p = c / N
                mi += p * math.log2(p / (ps[s] * pe[e]))
    return max(mi, 0.0)


def metrics_checks(run, k, n_sources):
    recs = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    hdr = [r["header"] for r in recs if "header" in r]
    steps = [r for r in recs if "loss" in r]
    evr = [r for r in recs if "eval_routing" in r]
    h = hdr[0] if hdr else {}
    check("metrics/header", len(hdr) == 1 and all(x in h for x in ("model", "router", "train", "params",
          "active_params", "fwd_flops", "train_flops", "hardware", "threads", "data")) and
          h["params"] > h["active_params"] > 0 and h["fwd_flops"] > 0 and h["threads"] >= 1 and
          h["hardware"]["cores"] >= 1, "header %s" % str(h)[:300])
    check("metrics/steps", steps and all(all(x in s for x in ("lr", "grad_norm", "aux", "z", "tokens_per_s", "wall"))
                                          for s in steps) and
          all(b["wall"] >= a["wall"] for a, b in zip(steps, steps[1:])), "step lines lack fields or wall goes back")
    if not check("metrics/eval_routing", len(evr) >= 2, "%d eval_routing records" % len(evr)):
        return
    bad = []
    for r in evr:
        e = r["eval_routing"]
        if len(e["sources"]) != n_sources or sum(e["source_tokens"]) != e["tokens"]:
            bad.append("sources %s, tokens %s vs %d" % (e["sources"], e["source_tokens"], e["tokens"]))
        for ly in e["layers"]:
            c = ly["counts"]
            E = len(ly["load"])
            col = [sum(row[x] for row in c) for x in range(E)]
            if col != ly["load"]:
                bad.append("layer %d: counts do not add up to load" % ly["layer"])
            if sum(ly["load"]) != k * e["tokens"]:
                bad.append("layer %d: %d assignments for %d tokens, k = %d" % (ly["layer"], sum(ly["load"]),
                                                                              e["tokens"], k))
            mean = sum(ly["load"]) / E
            mv = max(ly["load"]) / mean - 1
            if abs(mv - ly["max_violation"]) > 1e-3:
                bad.append("layer %d: max_violation %g, recomputed %g" % (ly["layer"], ly["max_violation"], mv))
            if ly["dead_experts"] != sum(1 for x in ly["load"] if x == 0):
                bad.append("layer %d: dead experts" % ly["layer"])
            if abs(mi_bits(c) - ly["mi_bits"]) > 1e-4:
                bad.append("layer %d: mi %g, recomputed %g" % (ly["layer"], ly["mi_bits"], mi_bits(c)))
    check("metrics/eval_routing_sums", not bad, "; ".join(bad[:5]))
    last = evr[-1]["eval_routing"]
    check("metrics/sources_seen", sum(1 for x in last["source_tokens"] if x > 0) >= 2,
          "held-out tokens per source %s: fewer than 2 sources" % last["source_tokens"])


def main():
    if not os.path.exists(MOE):
        print("FAIL %s: %s does not exist" % (NAME, MOE))
        return 1
    exe = find_chromium()
    if exe is None:
        if IN_CI:
            fail("chromium", "no chromium on PATH (scripts/deps.sh installs Debian's chromium)")
        else:
            print("SKIPPED %s/chromium: no chromium on PATH; the pages are checked as XML only" % NAME)
    with tempfile.TemporaryDirectory() as tmp:
        run, dense = os.path.join(tmp, "moe-run"), os.path.join(tmp, "dense-run")
        common = ["--corpus-bytes", "120000", "--steps", "20", "--eval-every", "10", "--eval-batches", "4",
                  "--batch", "4", "--ctx", "64", "--d", "64", "--layers", "2", "--vocab", "400", "--quiet"]
        rc, out, err = moe("train", "--out", run, "--experts", "4", "--k", "2", "--report-every", "10", *common)
        if not check("train_moe", rc == 0, "moe train: rc %d: %s" % (rc, err[-500:])):
            return 1
        rc, out, err = moe("train", "--out", dense, "--dense", *common)
        if not check("train_dense", rc == 0, "moe train --dense: rc %d: %s" % (rc, err[-500:])):
            return 1
        metrics_checks(run, 2, 5)
        check("report_every", os.path.exists(os.path.join(run, "report.html")),
              "--report-every left no report.html in the run folder")
        page = os.path.join(tmp, "report.html")
        rc, out, err = moe("report", run, dense, "-o", page)
        if check("report", rc == 0 and os.path.exists(page), "moe report: rc %d: %s" % (rc, err[-500:])):
            want = ["report-title", "tab-config", "fig-loss-steps", "fig-loss-wall", "fig-val-steps", "fig-val-late", "fig-val-wall", "fig-lr", "fig-grad-norm",
                    "fig-aux", "fig-z", "fig-tokens-per-s", "fig-maxviol-r0", "fig-dead-r0", "fig-mi-r0",
                    "tab-mi-r0", "run-0", "run-1"]
            want += ["fig-load-r0-l%d" % l for l in (0, 1)] + ["fig-src-r0-l%d" % l for l in (0, 1)]
            render_checks("report", exe, page, want, tmp)
            text = open(page, encoding="utf-8").read()
            check("report/legend", run in text and dense in text, "the runs are not both named on the page")
            # docs/STUDY.md's figures: scripts/study_figures.py exports figures as standalone SVG files
            figs = os.path.join(tmp, "figs")
            r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "study_figures.py"), page, figs,
                                "fig-val-late=val", "fig-load-r0-l1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            ok, why = r.returncode == 0, "rc %d: %s" % (r.returncode, r.stderr.decode()[-300:])
            for f in ("val.svg", "fig-load-r0-l1.svg"):
                try:
                    root = ET.parse(os.path.join(figs, f)).getroot()
                    style = root.find("{http://www.w3.org/2000/svg}style")
                    if root.tag != "{http://www.w3.org/2000/svg}svg" or style is None or ".ft" not in style.text:
                        ok, why = False, "%s: not an <svg> with the page's style rules" % f
                except (OSError, ET.ParseError) as e:
                    ok, why = False, "%s: %s" % (f, e)
            r2 = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "study_figures.py"), page, figs,
                                 "fig-no-such"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            check("report/export_svg", ok and r2.returncode != 0 and b"fig-no-such" in r2.stderr, why if not ok else
                  "an unknown figure id: rc %d" % r2.returncode)
        rc, out, err = moe("report", os.path.join(tmp, "nothing"), "-o", os.path.join(tmp, "x.html"))
        check("report/missing", rc != 0 and "metrics.jsonl" in err and not os.path.exists(os.path.join(tmp, "x.html")),
              "rc %d, %s" % (rc, err.strip()))
        rpage = os.path.join(tmp, "route.html")
        rc, out, err = moe("route", os.path.join(run, "model.gguf"), "-p",
                           "Once there was a fox named Max. 12 + 7 = 19\ndef f(x):\n    return x <&> \"q\"",
                           "--html", rpage)
        if check("route_html", rc == 0 and os.path.exists(rpage), "moe route --html: rc %d: %s" % (rc, err[-500:])):
            render_checks("route", exe, rpage, ["route-title", "route-layers", "route-views", "route-layer-0",
                                                "route-layer-1", "fig-route-usage", "sel-0", "sel-1"], tmp)
            text = open(rpage, encoding="utf-8").read()
            check("route_html/tooltips", len(re.findall(r'title="token \d+ \(id \d+\), layer 1: e\d+ [0-9.]+ e\d+',
                                                        text)) >= 10, "no per-token weight tooltips for layer 1")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
