"""Build hook: the request path's modules (nomadkv/native.py) compiled with mypyc.

Everything else about the package is in pyproject.toml. NOMADKV_INTERPRETED=1
builds no extensions (pure Python, for debugging and profiling by line).
"""

import os
import runpy

from setuptools import setup

native = runpy.run_path(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "nomadkv", "native.py")
)
extensions = []
if not os.environ.get("NOMADKV_INTERPRETED"):
    from mypyc.build import mypycify

    extensions = mypycify(list(native["COMPILED"]), group_name=native["GROUP"], opt_level="3")

setup(ext_modules=extensions)
