"""Redis's glob-style patterns (KEYS, SCAN MATCH), byte for byte. Pure.

Owns the meaning of a pattern as Redis 7.0's ``stringmatchlen`` (util.c)
gives it: ``*``, ``?``, ``[abc]``, ``[^a]``, ``[a-z]``, ``\\x`` escapes, and
its quirks, kept on purpose because clients see them:

- a range's ends may come in either order, and bytes are compared as C's
  signed ``char`` (so ``[a-\\xff]`` is the range from -1 to 'a');
- an unclosed ``[`` runs to the end of the pattern, ``[]`` matches nothing
  and ``[^]`` any byte; a trailing ``\\`` is a literal backslash;
- a match that has to enter more than 1000 ``*`` fails (Redis's guard
  against abusive patterns);
- the empty key matches the empty pattern only (KEYS and SCAN treat the
  pattern ``*`` apart, so it still lists the empty key).

How a pattern parses never depends on the subject, so a pattern is split
once into tokens (a ``*``, or the set of bytes one position accepts) and
compiled, with a small cache: without ``*`` into one anchored regular
expression; with stars into the segments between them, the first anchored
at the start, the last at the end, the middle ones found leftmost-first.
That greedy search is exact for tokens that each take one byte, and linear
where a backtracking regex over ``.*`` would blow up on ``*a*a*a*b``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

STAR = None  # the token for "*"
Token = frozenset[int] | None

_ASTERISK, _QUESTION, _LBRACKET, _RBRACKET = 0x2A, 0x3F, 0x5B, 0x5D
_BACKSLASH, _CARET, _DASH = 0x5C, 0x5E, 0x2D
_ANY: frozenset[int] = frozenset(range(256))
MAX_STARS = 1000  # Redis: "if (nesting > 1000) return 0"


def _signed(byte: int) -> int:
    """A byte as C's (signed) char on x86-64 and arm64 Linux builds of Redis."""
    return byte - 256 if byte >= 128 else byte


def tokenize(pattern: bytes) -> list[Token]:
    """The pattern's tokens, parsed exactly as stringmatchlen walks it."""
    tokens: list[Token] = []
    n = len(pattern)

    def at(i: int) -> int:  # C reads the NUL terminator past the end
        return pattern[i] if i < n else 0

    i = 0
    while i < n:
        c = pattern[i]
        if c == _ASTERISK:
            while at(i + 1) == _ASTERISK:
                i += 1
            tokens.append(STAR)
        elif c == _QUESTION:
            tokens.append(_ANY)
        elif c == _LBRACKET:
            i += 1
            negate = at(i) == _CARET
            if negate:
                i += 1
            members: set[int] = set()
            while True:
                left = n - i
                if at(i) == _BACKSLASH and left >= 2:
                    i += 1
                    members.add(pattern[i])
                elif at(i) == _RBRACKET:
                    break
                elif left == 0:
                    i -= 1  # unclosed: the class ends with the pattern
                    break
                elif left >= 3 and pattern[i + 1] == _DASH:
                    start, end = _signed(pattern[i]), _signed(pattern[i + 2])
                    if start > end:
                        start, end = end, start
                    members.update(b for b in range(256) if start <= _signed(b) <= end)
                    i += 2
                else:
                    members.add(pattern[i])
                i += 1
            tokens.append(_ANY - members if negate else frozenset(members))
        elif c == _BACKSLASH and n - i >= 2:
            i += 1
            tokens.append(frozenset((pattern[i],)))
        else:
            tokens.append(frozenset((c,)))
        i += 1
    return tokens


def _regex(tokens: list[Token]) -> bytes:
    parts = []
    for token in tokens:
        if token is STAR:
            raise ValueError("a segment holds no star")
        if len(token) == 256:
            parts.append(b".")
        elif not token:
            parts.append(b"(?!)")
        elif len(token) == 1:
            parts.append(b"\\x%02x" % next(iter(token)))
        else:
            parts.append(b"[" + b"".join(b"\\x%02x" % b for b in sorted(token)) + b"]")
    return b"".join(parts)


def _segments(tokens: list[Token]) -> list[list[Token]]:
    segments: list[list[Token]] = [[]]
    for token in tokens:
        if token is STAR:
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


@lru_cache(maxsize=512)
def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """A function telling whether a key matches ``pattern``."""
    tokens = tokenize(pattern)
    stars = tokens.count(STAR)
    if stars == 0:
        if all(len(t) == 1 for t in tokens if t is not STAR):
            literal = bytes(next(iter(t)) for t in tokens if t is not STAR)
            return literal.__eq__
        whole = re.compile(_regex(tokens), re.DOTALL)
        return lambda key: whole.fullmatch(key) is not None
    trailing_star = tokens[-1] is STAR
    if stars - trailing_star > MAX_STARS:
        # Any match would have to enter every star before the end of the key.
        return lambda key: False
    first, *middle, last = _segments(tokens)
    head = re.compile(_regex(first), re.DOTALL)
    tail = re.compile(_regex(last), re.DOTALL)
    searches = [re.compile(_regex(s), re.DOTALL).search for s in middle if s]
    head_len, tail_len = len(first), len(last)
    needed = head_len + tail_len + sum(len(s) for s in middle)

    def match(key: bytes) -> bool:
        n = len(key)
        if n == 0 or n < needed or head.match(key, 0, head_len) is None:
            return False
        end = n - tail_len
        if tail.match(key, end) is None:
            return False
        pos = head_len
        for search in searches:
            found = search(key, pos, end)
            if found is None:
                return False
            pos = found.end()
        return True

    return match


def matches(pattern: bytes, key: bytes) -> bool:
    """Whether ``key`` matches the glob-style ``pattern``."""
    return compile_pattern(pattern)(key)
