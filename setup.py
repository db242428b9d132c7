"""Build hook: compile the simulator's hot modules with mypyc.

The modules in ``COMPILED`` (kept in step with the Makefile) are ordinary type-hinted Python;
mypyc (part of mypy) compiles the same source to C extensions, about twice as fast. Set
``PRFAAS_PURE_PYTHON=1`` when installing to skip compilation (no C compiler needed); the
package then runs the identical source as plain Python.
"""

import os

from setuptools import setup

COMPILED = ["simulator", "link", "decode", "prefix_cache", "estimate", "featurizer", "profile",
            "contract", "request", "block_hashes", "actions"]

ext_modules = []
if os.environ.get("PRFAAS_PURE_PYTHON", "") in ("", "0"):
    from mypyc.build import mypycify

    ext_modules = mypycify(
        ["--follow-imports=silent", "--ignore-missing-imports", "--no-site-packages",
         *(f"prfaas_gym/{m}.py" for m in COMPILED)],
        opt_level="3",
    )

setup(ext_modules=ext_modules)
