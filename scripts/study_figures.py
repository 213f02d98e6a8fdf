#!/usr/bin/env python3
"""study_figures.py REPORT.html OUTDIR ID[=NAME]...: export figures of a
`moe report` page as standalone SVG files (OUTDIR/NAME.svg, NAME defaults
to ID) for docs/STUDY.md. Each figure is the page's inline <svg id=ID>
with the page's svg style rules copied in, so it draws the same outside the
page; every file is checked to be well-formed XML. Numbers and drawing are
moe report's: nothing is redrawn here.
"""
import os
import re
import sys
import xml.dom.minidom


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    page = open(sys.argv[1], encoding="utf-8").read()
    outdir = sys.argv[2]
    os.makedirs(outdir, exist_ok=True)
    m = re.search(r"<style>(.*?)</style>", page, re.S)
    rules = re.findall(r"(svg[^{}]*\{[^}]*\})", m.group(1)) if m else []
    style = "<style>" + "".join(rules) + "</style>"
    for arg in sys.argv[3:]:
        fid, _, name = arg.partition("=")
        s = re.search(r'<svg[^>]*\bid="%s"[^>]*>.*?</svg>' % re.escape(fid), page, re.S)
        if not s:
            print("study_figures: no figure with id %s in %s" % (fid, sys.argv[1]), file=sys.stderr)
            return 1
        svg = s.group(0)
        head = svg.index(">") + 1
        svg = '<?xml version="1.0" encoding="UTF-8"?>\n' + svg[:head] + style + svg[head:] + "\n"
        xml.dom.minidom.parseString(svg.encode("utf-8"))   # raises if not well-formed
        path = os.path.join(outdir, (name or fid) + ".svg")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(svg)
        os.replace(path + ".tmp", path)
        print("%s: %d bytes" % (path, len(svg.encode("utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
