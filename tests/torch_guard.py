"""torch_guard.py: the one import of numpy and torch for the PyTorch
reference tests. Without them a test prints SKIPPED with the reason and exits
0 — except in CI (CI=true), where the references must run: FAIL, exit 1."""
import os
import sys


def import_torch(test_name):
    """(numpy, torch), or exits as described above."""
    try:
        import numpy
        import torch
    except Exception as e:  # ImportError, or a broken install
        why = "%s: %s" % (type(e).__name__, e)
        if os.environ.get("CI") == "true":
            print("FAIL %s: torch missing in CI (%s)" % (test_name, why))
            sys.exit(1)
        print("SKIPPED %s: %s" % (test_name, why))
        sys.exit(0)
    return numpy, torch
