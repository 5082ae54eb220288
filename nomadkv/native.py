"""The compiled build: which modules mypyc compiles, and whether they are current.

The request path (parse, gate, handler, reply, apply) is compiled with mypyc
into C extensions that sit beside their sources (``make compile``, also part
of ``make install``; setup.py builds the same list into a wheel). The source
stays the one truth: a module whose extension is missing runs as Python, and
``NOMADKV_INTERPRETED=1`` at build time builds none. Python imports an
extension in preference to its ``.py``, so an extension older than its source
(edited since the last build) would silently run old code: ``stale`` finds
those, and the test suite and ``nomadkv server`` refuse to run with any.
Measured gain and hazards: docs/decisions.md. No imports beyond the standard
library: setup.py reads this file before anything is installed.
"""

from __future__ import annotations

import glob
import os

# Paths from the repository root, as mypyc takes them.
COMPILED = (
    "nomadkv/resp/request.py",
    "nomadkv/resp/reply.py",
    "nomadkv/commands/table.py",
    "nomadkv/commands/strings.py",
    "nomadkv/commands/machine.py",
    "nomadkv/server/client.py",
    "nomadkv/server/node.py",
    "nomadkv/storage/log.py",
)
GROUP = "nomadkv.native"  # the shared library: nomadkv/native__mypyc.*.so

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _extensions(source: str) -> list[str]:
    return glob.glob(os.path.join(_ROOT, source[: -len(".py")] + ".cpython-*.so"))


def stale() -> list[str]:
    """Compiled modules whose source changed after their extension was built, in a
    source tree (setup.py beside the package). An installed wheel's files carry
    the times they were unpacked, and nobody edits them in place."""
    if not os.path.exists(os.path.join(_ROOT, "setup.py")):
        return []
    found = []
    for source in COMPILED:
        path = os.path.join(_ROOT, source)
        for extension in _extensions(source):
            if os.path.exists(path) and os.path.getmtime(extension) < os.path.getmtime(path):
                found.append(source)
    return found


def compiled() -> bool:
    """True when the request path runs compiled (its extensions are imported)."""
    from nomadkv.server import client

    return not (client.__file__ or "").endswith(".py")
