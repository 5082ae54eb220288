"""Redis's glob patterns (``stringmatchlen`` in util.c), for CONFIG GET and
COMMAND LIST FILTERBY PATTERN.

Owns the translation of a pattern into a compiled regular expression. Pure:
no I/O. Syntax: ``*`` any run, ``?`` one character, ``[abc]``, ``[^abc]``,
``[a-z]`` (a reversed range matches too, as in Redis), ``\\x`` the literal
``x``; an unclosed ``[`` runs to the end of the pattern, as in Redis.
"""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def _compile(pattern: bytes, nocase: bool) -> re.Pattern[bytes]:
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # '*'
            out += b".*"
        elif c == 0x3F:  # '?'
            out += b"."
        elif c == 0x5C and i + 1 < n:  # '\\'
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == 0x5B:  # '['
            i += 1
            negate = i < n and pattern[i] == 0x5E  # '^'
            if negate:
                i += 1
            members: list[bytes] = []
            while i < n and pattern[i] != 0x5D:  # ']'
                if pattern[i] == 0x5C and i + 1 < n:
                    i += 1
                    members.append(re.escape(pattern[i : i + 1]))
                elif i + 2 < n and pattern[i + 1] == 0x2D and pattern[i + 2] != 0x5D:  # a-z
                    low, high = sorted((pattern[i], pattern[i + 2]))
                    members.append(re.escape(bytes([low])) + b"-" + re.escape(bytes([high])))
                    i += 2
                else:
                    members.append(re.escape(pattern[i : i + 1]))
                i += 1
            body = b"".join(members)
            if not body:
                out += b"[^\\s\\S]" if not negate else b"[\\s\\S]"
            else:
                out += b"[" + (b"^" if negate else b"") + body + b"]"
        else:
            out += re.escape(pattern[i : i + 1])
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if nocase else 0)
    return re.compile(bytes(out), flags)


def glob_match(pattern: bytes, text: bytes, nocase: bool = False) -> bool:
    """True if ``text`` matches the Redis glob ``pattern`` as a whole."""
    return _compile(pattern, nocase).fullmatch(text) is not None
