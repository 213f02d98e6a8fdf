#!/usr/bin/env bash
# study_corpus.sh OUT [BYTES]: a mixed-domain corpus for docs/STUDY.md from
# files Debian packages put on this machine: four natural languages and
# three programming languages, about BYTES (default 600000) of text each.
#
#   en      English manual pages, section 1 (/usr/share/man/man1: coreutils,
#           util-linux, dpkg, apt, ... whatever is installed), rendered to text
#   de, fr  German and French manual pages (/usr/share/man/{de,fr}): the
#           translations that man-db, dpkg, dpkg-dev, apt, procps, psmisc,
#           xz-utils, passwd ship (manpages-de / manpages-fr add many more)
#   sv      Swedish manual pages, same packages (fewer pages)
#   c       C headers (/usr/include: libc6-dev, linux-libc-dev, ...)
#   python  the Python standard library (/usr/lib/python3.X: libpython3.X-stdlib)
#   perl    Perl modules (/usr/share/perl/5.X: perl-modules-5.X)
# Why these: every Debian system with a compiler has them (nothing is
# downloaded), they are real text written by people, the four languages share
# an alphabet but not a vocabulary (a router can tell them apart only by
# content), and the three programming languages share keywords and
# punctuation (if, for, return, braces) but differ in style.
#
# Layout: OUT/train/<domain>/NNN.txt and OUT/heldout/<domain>.txt (the
# held-out files are different source files from the same packages: every
# 10th file of the sorted list). Train with `moe train --data OUT/train`
# (one source per domain) and score with `moe eval MODEL OUT/heldout/*.txt`.
# Deterministic: files in LC_ALL=C order, whole files (a domain overshoots
# BYTES by at most its last file: /usr/include's largest headers make c the
# biggest). Needs groff (man pages to text); missing domains are skipped
# with a note.
set -euo pipefail
export LC_ALL=C
OUT=${1:?usage: study_corpus.sh OUT [BYTES]}
BYTES=${2:-600000}
rm -rf "$OUT"
mkdir -p "$OUT/train" "$OUT/heldout"

# emit FILE: the file's text on stdout (man pages rendered), nothing if unreadable
emit() {
  case "$1" in
    *.gz) zcat "$1" 2>/dev/null | groff -k -Tutf8 -man -P-cbou 2>/dev/null | sed -e 's/[[:space:]]*$//' | cat -s ;;
    *) cat "$1" 2>/dev/null ;;
  esac
}

# domain NAME FILE...: every 10th file to held-out, the rest to training,
# each side up to BYTES (held-out up to BYTES/5), valid UTF-8 only.
domain() {
  local name=$1; shift
  if [ $# -eq 0 ]; then echo "study_corpus: no files for $name, skipped" >&2; return; fi
  mkdir -p "$OUT/train/$name"
  local i=0 tb=0 hb=0 part=0 f tmp
  tmp=$(mktemp)
  for f in "$@"; do
    [ "$tb" -ge "$BYTES" ] && [ "$hb" -ge $((BYTES / 5)) ] && break
    emit "$f" > "$tmp" || true
    iconv -f UTF-8 -t UTF-8 "$tmp" > /dev/null 2>&1 || continue   # not UTF-8: skip
    [ -s "$tmp" ] || continue
    tr -d '\000' < "$tmp" > "$tmp.2" && mv "$tmp.2" "$tmp"
    local n; n=$(wc -c < "$tmp")
    if [ $((i % 10)) -eq 9 ]; then
      if [ "$hb" -lt $((BYTES / 5)) ]; then cat "$tmp" >> "$OUT/heldout/$name.txt"; printf '\n' >> "$OUT/heldout/$name.txt"; hb=$((hb + n)); fi
    elif [ "$tb" -lt "$BYTES" ]; then
      local dst; dst=$(printf '%s/train/%s/%03d.txt' "$OUT" "$name" "$part")
      cat "$tmp" >> "$dst"; printf '\n' >> "$dst"; tb=$((tb + n))
      [ "$(wc -c < "$dst")" -ge 200000 ] && part=$((part + 1))
    fi
    i=$((i + 1))
  done
  rm -f "$tmp"
  echo "study_corpus: $name: $tb training bytes, $hb held-out bytes from $i files" >&2
}

files() { find "$@" -type f 2>/dev/null | sort; }
py=$(ls -d /usr/lib/python3.[0-9]* 2>/dev/null | sort -V | tail -1)
perl=$(ls -d /usr/share/perl/5.* 2>/dev/null | sort -V | tail -1)
domain en $(files /usr/share/man/man1 -name '*.1.gz')
domain de $(files /usr/share/man/de -name '*.gz')
domain fr $(files /usr/share/man/fr -name '*.gz')
domain sv $(files /usr/share/man/sv -name '*.gz')
domain c $(files /usr/include -name '*.h')
domain python $( [ -n "$py" ] && files "$py" -maxdepth 2 -name '*.py' -not -path '*/test/*')
domain perl $( [ -n "$perl" ] && files "$perl" -name '*.pm')
du -sb "$OUT"/train/* "$OUT"/heldout/* >&2
