"""The compiled glob matcher agrees with a line-by-line port of Redis's
stringmatchlen_impl (util.c, 7.0) on every pattern and subject tried."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nomadkv.commands.glob import compile_pattern, matches, tokenize


def redis_stringmatch(pattern: bytes, string: bytes) -> bool:
    """stringmatchlen transcribed from C, reads past the end included (they see NUL)."""

    def pat(i: int) -> int:
        return pattern[i] if i < len(pattern) else 0

    def ch(i: int) -> int:
        return string[i] if i < len(string) else 0

    def signed(byte: int) -> int:
        return byte - 256 if byte >= 128 else byte

    skip_longer_matches = False

    def impl(p: int, plen: int, s: int, slen: int, nesting: int) -> bool:
        nonlocal skip_longer_matches
        if nesting > 1000:
            return False
        while plen and slen:
            c = pat(p)
            if c == ord("*"):
                while plen and pat(p + 1) == ord("*"):
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if impl(p + 1, plen - 1, s, slen, nesting + 1):
                        return True
                    if skip_longer_matches:
                        return False
                    s += 1
                    slen -= 1
                skip_longer_matches = True
                return False
            if c == ord("?"):
                s += 1
                slen -= 1
            elif c == ord("["):
                p += 1
                plen -= 1
                negate = pat(p) == ord("^")
                if negate:
                    p += 1
                    plen -= 1
                match = False
                while True:
                    if pat(p) == ord("\\") and plen >= 2:
                        p += 1
                        plen -= 1
                        if pat(p) == ch(s):
                            match = True
                    elif pat(p) == ord("]"):
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and pat(p + 1) == ord("-"):
                        start, end, c2 = signed(pat(p)), signed(pat(p + 2)), signed(ch(s))
                        if start > end:
                            start, end = end, start
                        p += 2
                        plen -= 2
                        if start <= c2 <= end:
                            match = True
                    elif pat(p) == ch(s):
                        match = True
                    p += 1
                    plen -= 1
                if negate:
                    match = not match
                if not match:
                    return False
                s += 1
                slen -= 1
            else:
                if c == ord("\\") and plen >= 2:
                    p += 1
                    plen -= 1
                if pat(p) != ch(s):
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while pat(p) == ord("*"):
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return impl(0, len(pattern), 0, len(string), 0)


PATTERN_BYTES = st.sampled_from([*b"ab*?[]^-\\", 0x80, 0xFF, 0x00])
SUBJECT_BYTES = st.sampled_from([*b"ab-]^\\*", 0x80, 0xFF, 0x00])


@settings(max_examples=1500, deadline=None)
@given(
    st.lists(PATTERN_BYTES, max_size=10).map(bytes),
    st.lists(SUBJECT_BYTES, max_size=8).map(bytes),
)
def test_compiled_matcher_agrees_with_redis(pattern: bytes, subject: bytes) -> None:
    assert matches(pattern, subject) == redis_stringmatch(pattern, subject)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12), st.binary(max_size=12))
def test_any_bytes_agree(pattern: bytes, subject: bytes) -> None:
    assert matches(pattern, subject) == redis_stringmatch(pattern, subject)


def test_quirks() -> None:
    cases = [
        (b"*", b"", False),  # the loop never starts: KEYS and SCAN special-case "*"
        (b"**", b"", False),
        (b"", b"", True),
        (b"", b"a", False),
        (b"h?llo", b"hallo", True),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hillo", False),
        (b"h[^e]llo", b"hallo", True),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hbllo", True),  # ends in either order
        (b"[]", b"]", False),  # an empty class, then a literal ']'... which never comes
        (b"[]]", b"]", False),  # "[]" is an empty class, then a literal "]"
        (b"[^]", b"x", True),
        (b"[abc", b"c", True),  # unclosed: the class runs to the end
        (b"[a-", b"-", True),  # not a range: 'a' and '-'
        (b"a\\", b"a\\", True),  # a trailing backslash is literal
        (b"\\*", b"*", True),
        (b"\\*", b"a", False),
        (b"[\\]]", b"]", True),
        (b"[a-\xff]", b"\x00", True),  # signed chars: from -1 to 'a'
        (b"[a-\xff]", b"\x80", False),
        (b"*a*a*a*a*a*a*a*a*b", b"a" * 60, False),
    ]
    for pattern, subject, expected in cases:
        assert matches(pattern, subject) is expected, (pattern, subject)
        assert redis_stringmatch(pattern, subject) is expected, (pattern, subject)


def test_more_than_1000_stars_never_match() -> None:
    subject = b"a" * 1200
    assert matches(b"*a" * 1000, subject)
    assert not matches(b"*a" * 1001, subject)
    assert matches(b"*a" * 1000 + b"*", subject)


def test_tokens_are_parsed_once() -> None:
    assert compile_pattern(b"k*") is compile_pattern(b"k*")
    assert tokenize(b"a**b") == [frozenset(b"a"), None, frozenset(b"b")]
