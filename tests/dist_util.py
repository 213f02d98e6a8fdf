"""dist_util.py: the check reporting and the rank environment shared by the
MPI tests (test_dist.py, test_dist_netns.py). Each check prints "ok NAME
(...)" or "FAIL NAME: ..." (tests/run.sh counts these lines); `failed()`
gives the number of failures for the exit code."""
import os
import sys

_state = {"failed": 0}


def failed():
    return _state["failed"]


def report(name, ok, why="", extra=""):
    if ok:
        print("ok %s%s" % (name, " (%s)" % extra if extra else ""))
    else:
        _state["failed"] += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def skip_or_fail(name, why):
    """A missing dependency: SKIPPED outside CI, FAIL (and exit 1) under CI."""
    if os.environ.get("CI"):
        report(name, False, why + " (required under CI)")
        sys.exit(1)
    print("SKIPPED %s: %s" % (name, why))
    sys.exit(0)


def env():
    """The environment of mpirun and its ranks."""
    e = dict(os.environ)
    e.pop("LD_PRELOAD", None)  # make sanitize preloads ASan for Python, not for mpirun
    e["OMP_NUM_THREADS"] = "1"
    e["ASAN_OPTIONS"] = "detect_leaks=0"  # Open MPI keeps its allocations to exit
    return e
