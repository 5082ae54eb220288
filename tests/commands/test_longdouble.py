"""INCRBYFLOAT's arithmetic agrees with the C library Redis uses: glibc's
strtold, an exactly rounded long double addition (fmal(a, 1, b)) and
snprintf("%.17Lf"), called through ctypes on this machine's x87 long double."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import math
import platform
from fractions import Fraction

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from nomadkv.commands import longdouble

pytestmark = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="x87 long double is the reference"
)


class LongDouble(ctypes.c_longdouble):
    """A subclass, so ctypes hands back the 80-bit value instead of a Python float."""


libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libm = ctypes.CDLL(ctypes.util.find_library("m"))
libc.strtold.restype = LongDouble
libc.strtold.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p)]
libm.fmal.restype = LongDouble
libm.fmal.argtypes = [LongDouble, LongDouble, LongDouble]
ONE = libc.strtold(b"1", None)


def c_format(value: LongDouble) -> bytes:
    buf = ctypes.create_string_buffer(6000)
    libc.snprintf(buf, 6000, b"%.17Lf", value)
    text = buf.value
    if b"." in text:
        text = text.rstrip(b"0").rstrip(b".")
    return b"0" if text == b"-0" else text


def c_sum(a: bytes, b: bytes) -> bytes:
    return c_format(libm.fmal(libc.strtold(a, None), ONE, libc.strtold(b, None)))


NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(f).encode()),
    st.integers(0, 25)
    .flatmap(lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places))
    .map(lambda d: str(d).encode()),
    st.integers(-(2**80), 2**80).map(lambda i: b"%d" % i),
    st.builds(lambda m, e: b"%de%d" % (m, e), st.integers(-(10**25), 10**25), st.integers(-30, 30)),
)


@settings(max_examples=1500, deadline=None)
@given(NUMBER_TEXT, NUMBER_TEXT)
@example(b"10.5", b"0.1")
@example(b"0.1", b"0.2")
@example(b"1.5e300", b"0")
@example(b"-1e-20", b"0")
def test_sum_and_format_match_glibc(a: bytes, b: bytes) -> None:
    x, y = longdouble.parse(a), longdouble.parse(b)
    assert x is not None and y is not None
    assert longdouble.format_human(longdouble.add(x, y)) == c_sum(a, b)


def strtold_or_none(text: bytes) -> LongDouble | None:
    """strtold's value, None where Redis's string2ld refuses it (ERANGE at 0 or inf)."""
    ctypes.set_errno(0)
    value = libc.strtold(text, None)
    hex_text = ctypes.create_string_buffer(100)
    libc.snprintf(hex_text, 100, b"%La", value)
    if ctypes.get_errno() == errno.ERANGE and hex_text.value.lstrip(b"-") in (b"0x0p+0", b"inf"):
        return None
    return value


def same_as_strtold(text: bytes) -> None:
    parsed = longdouble.parse(text)
    c_value = strtold_or_none(text)
    if parsed is None or c_value is None:
        assert parsed is None and c_value is None, text
        return
    assert longdouble.format_human(longdouble.add(parsed, Fraction(0))) == c_sum(text, b"0")


@settings(max_examples=500, deadline=None)
@given(st.integers(-(2**70), 2**70), st.integers(-16520, 16400))
def test_binary_exponents_round_like_glibc(mantissa: int, exponent: int) -> None:
    same_as_strtold(b"%s0x%xp%d" % (b"-" if mantissa < 0 else b"", abs(mantissa), exponent))


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10**30), 10**30), st.integers(-4990, 4935))
def test_decimal_exponents_round_like_glibc(mantissa: int, exponent: int) -> None:
    same_as_strtold(b"%de%d" % (mantissa, exponent))


def test_what_strtold_accepts() -> None:
    parse = longdouble.parse
    assert parse(b"inf") == math.inf and parse(b"-Infinity") == -math.inf
    for text in [b"nan", b"", b" 1", b"1 ", b"1e", b"0x", b"1e5000", b"1e-5000", b"abc", b"1_0"]:
        assert parse(text) is None, text
    assert parse(b"0e-99999999999") == 0
    assert parse(b".5") == Fraction(1, 2) and parse(b"1.") == 1 and parse(b"+0X1P4") == 16
    assert parse(b"0." + b"1" * 5117) is not None and parse(b"0." + b"1" * 5118) is None
    assert parse(b"1e-4940") is not None  # subnormal: ERANGE, but not zero, so accepted


def test_sums_that_overflow() -> None:
    big = longdouble.parse(b"1.18e4932")
    assert big is not None
    with pytest.raises(longdouble.NotFinite):
        longdouble.add(big, big)
    with pytest.raises(longdouble.NotFinite):
        longdouble.add(math.inf, Fraction(1))


def test_long_results_format_past_pythons_digit_limit() -> None:
    big = longdouble.parse(b"1.18e4932")
    assert big is not None
    assert longdouble.format_human(big) == c_format(libc.strtold(b"1.18e4932", None))
