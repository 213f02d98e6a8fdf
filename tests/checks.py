"""checks.py: the reporting and comparison helpers shared by the PyTorch
reference tests (test_*_torch.py).

Each check prints "ok NAME (...)" or "FAIL NAME: ..." (tests/run.sh counts
these lines); `counts()` gives (checks, failed) for the closing summary.
Comparisons: check_close uses the normalized error
max|c - ref| / max(max|ref|, floor); check_exact needs equality.
"""
import sys

import numpy as np

_state = {"checks": 0, "failed": 0}


def counts():
    return _state["checks"], _state["failed"]


def ok(name, extra=""):
    _state["checks"] += 1
    print("ok %s%s" % (name, (" (%s)" % extra) if extra else ""))
    sys.stdout.flush()


def fail(name, why):
    _state["checks"] += 1
    _state["failed"] += 1
    print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def check(name, cond, why_if_not, extra=""):
    if cond:
        ok(name, extra)
    else:
        fail(name, why_if_not)
    return cond


def note(msg):
    """A line the runner does not count."""
    print("# note " + msg)
    sys.stdout.flush()


def fmt_idx(idx):
    return "[" + ", ".join(str(int(i)) for i in idx) + "]"


def check_close(name, tensor, c, ref, tol=1e-4, floor=1e-30):
    """max|c - ref| / max(max|ref|, floor) <= tol; NaN in c is the worst."""
    if c is None:
        fail(name, "%s: the C side gave NULL / nothing" % tensor)
        return False
    c = np.asarray(c, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if c.shape != ref.shape:
        fail(name, "%s: shape %s, reference %s" % (tensor, c.shape, ref.shape))
        return False
    if ref.size == 0:
        ok(name, "empty")
        return True
    scale = max(float(np.max(np.abs(ref))), floor)
    diff = np.abs(c - ref)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    flat = int(np.argmax(diff))
    idx = np.unravel_index(flat, ref.shape)
    err = float(diff.flat[flat]) / scale
    if err <= tol:
        ok(name, ("err %.1e" % err) if ref.ndim else ("err %.1e, ref %.6g" % (err, float(ref))))
        return True
    where = "worst index %s" % fmt_idx(idx) if ref.ndim else "(scalar)"
    fail(name, "%s %s: c=%.9g ref=%.9g, err %.3e > %.0e (max|ref| %.3e)"
         % (tensor, where, c.flat[flat], ref.flat[flat], err, tol, scale))
    return False


def check_exact(name, tensor, c, ref):
    if c is None:
        fail(name, "%s: the C side gave NULL / nothing" % tensor)
        return False
    c = np.asarray(c)
    ref = np.asarray(ref)
    if c.shape != ref.shape:
        fail(name, "%s: shape %s, reference %s" % (tensor, c.shape, ref.shape))
        return False
    bad = np.argwhere(c != ref)
    if len(bad) == 0:
        ok(name, "exact")
        return True
    i = tuple(bad[0])
    fail(name, "%s differs at %d of %d places; first at %s: c=%s ref=%s"
         % (tensor, len(bad), c.size, fmt_idx(i) if c.ndim else "[]",
            c[i] if c.ndim else c, ref[i] if ref.ndim else ref))
    return False


def f32(v):
    """The float32 value a float config field holds, as a Python float."""
    return float(np.float32(v))
