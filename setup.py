"""Build hook: compile the simulator's hot modules with mypyc.

The modules in ``COMPILED`` (kept in step with the Makefile) are ordinary type-hinted Python;
mypyc (part of mypy) compiles the same source to C extensions, 3.5-4.8x as fast on
``benchmarks/bench_simulator.py`` (which prints the ratio). Set
``PRFAAS_PURE_PYTHON=1`` when installing to skip compilation (no C compiler needed); the
package then runs the identical source as plain Python.
"""

import importlib.machinery
import os
from pathlib import Path

from setuptools import setup

COMPILED = ["simulator", "link", "decode", "prefix_cache", "estimate", "featurizer", "profile",
            "contract", "request", "block_hashes", "actions", "coerce", "episode"]

ext_modules = []
if os.environ.get("PRFAAS_PURE_PYTHON", "") in ("", "0"):
    from mypyc.build import mypycify

    ext_modules = mypycify(
        ["--follow-imports=silent", "--ignore-missing-imports", "--no-site-packages",
         *(f"prfaas_gym/{m}.py" for m in COMPILED)],
        opt_level="3",
        group_name="prfaas_gym",  # a stable name for the shared runtime library
    )
else:
    # an earlier compiled editable install left extensions beside the sources; they would
    # shadow the sources this pure-Python install promises
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for stale in [*here.glob(f"prfaas_gym/*{suffix}"), *here.glob(f"*__mypyc{suffix}")]:
            stale.unlink(missing_ok=True)

setup(ext_modules=ext_modules)
