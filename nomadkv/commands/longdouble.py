"""x86 80-bit ``long double`` arithmetic, exactly as INCRBYFLOAT needs it. Pure.

Redis parses INCRBYFLOAT's operands with ``strtold``, adds them as ``long
double`` (a 64-bit significand on x86-64) and formats the sum with
``"%.17Lf"`` before trimming trailing zeros. Python's float has a 53-bit
significand and would answer ``10.59999999999999964`` where Redis answers
``10.6``, so values here are exact ``Fraction``s rounded to the 80-bit format
(round half to even, with its exponent range and subnormals), and formatting
rounds the exact value, as glibc's printf does.

Invariant: every finite value this module returns is representable as an
x87 extended double.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

SIGNIFICAND_BITS = 64
MIN_EXPONENT = -16382  # of a normal number, written as 1.f * 2**e
MAX_EXPONENT = 16383
OVERFLOW = Fraction(2) ** (MAX_EXPONENT + 1)
MAX_CHARS = 5 * 1024  # Redis's MAX_LONG_DOUBLE_CHARS: longer input is not a number

_DECIMAL = re.compile(rb"([+-]?)(?:(\d+)\.?(\d*)|\.(\d+))(?:[eE]([+-]?\d+))?")
_HEX = re.compile(
    rb"([+-]?)0[xX](?:([0-9a-fA-F]+)\.?([0-9a-fA-F]*)|\.([0-9a-fA-F]+))(?:[pP]([+-]?\d+))?"
)
_INFINITY = re.compile(rb"([+-]?)(?:inf|infinity)", re.IGNORECASE)
# Decimal exponents beyond these overflow or underflow whatever the digits.
_DECIMAL_EXPONENT_MAX = 4933
_DECIMAL_EXPONENT_MIN = -4952
# Python refuses int <-> decimal text conversions beyond 4300 digits (CVE-2020-10735);
# long doubles reach 4951 digits, so longer numbers are converted in chunks.
_CHUNK_DIGITS = 4000


class NotFinite(Exception):
    """An infinite or NaN result (Redis: "increment would produce NaN or Infinity")."""


def round_to_format(value: Fraction) -> Fraction:
    """``value`` rounded to the nearest long double; raises NotFinite on overflow."""
    if value == 0:
        return Fraction(0)
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if Fraction(2) ** exponent > magnitude:
        exponent -= 1
    exponent = max(exponent, MIN_EXPONENT)  # subnormals share the smallest quantum
    quantum = Fraction(2) ** (exponent - SIGNIFICAND_BITS + 1)
    rounded = round(magnitude / quantum) * quantum  # round() on a Fraction: half to even
    if rounded >= OVERFLOW:
        raise NotFinite
    return rounded if value > 0 else -rounded


def add(a: Fraction | float, b: Fraction | float) -> Fraction:
    """``a + b`` as the FPU computes it; raises NotFinite for an infinite or NaN sum."""
    if isinstance(a, float) or isinstance(b, float):  # an infinity: the sum is inf or NaN
        raise NotFinite
    return round_to_format(a + b)


def parse(text: bytes) -> Fraction | float | None:
    """Redis's string2ld: the exact value, ``math.inf`` or ``-math.inf`` for the
    infinities strtold accepts ("inf", "-Infinity"), None if not a number."""
    if not text or len(text) >= MAX_CHARS:
        return None
    infinity = _INFINITY.fullmatch(text)
    if infinity is not None:
        return -math.inf if infinity.group(1) == b"-" else math.inf
    found = _DECIMAL.fullmatch(text)
    if found is not None:
        sign, whole, fraction, bare_fraction, exponent_text = found.groups()
        digits = ((whole or b"") + (fraction or bare_fraction or b"")).lstrip(b"0")
        if not digits:
            return Fraction(0)
        exponent = _exponent(exponent_text) - len(fraction or bare_fraction or b"")
        magnitude = len(digits) - 1 + exponent
        if magnitude >= _DECIMAL_EXPONENT_MAX:
            return None  # strtold: HUGE_VALL and ERANGE, which Redis rejects
        if magnitude < _DECIMAL_EXPONENT_MIN:
            return None  # strtold: 0 and ERANGE
        exact = _decimal_int(digits) * Fraction(10) ** exponent
    else:
        found = _HEX.fullmatch(text)
        if found is None:
            return None  # includes "nan", spaces and trailing garbage
        sign, whole, fraction, bare_fraction, exponent_text = found.groups()
        digits = (whole or b"") + (fraction or bare_fraction or b"")
        exponent = _exponent(exponent_text) - 4 * len(fraction or bare_fraction or b"")
        mantissa = int(digits, 16)
        if mantissa == 0:
            return Fraction(0)
        magnitude = mantissa.bit_length() - 1 + exponent
        if magnitude > MAX_EXPONENT + 1:
            return None
        if magnitude < MIN_EXPONENT - SIGNIFICAND_BITS - 1:
            return None
        exact = mantissa * Fraction(2) ** exponent
    try:
        value = round_to_format(exact)
    except NotFinite:
        return None  # overflow in strtold is ERANGE, not an infinity Redis accepts
    if value == 0:
        return None  # underflow to zero: ERANGE
    return -value if sign == b"-" else value


def format_human(value: Fraction) -> bytes:
    """``"%.17Lf"`` of the exact value, trailing zeros and point removed, "-0" as "0"."""
    digits = _decimal_text(round(abs(value) * 10**17)).rjust(18, b"0")
    text = digits[:-17] + b"." + digits[-17:]
    text = text.rstrip(b"0").rstrip(b".")
    if value < 0 and text != b"0":
        text = b"-" + text
    return text


def _exponent(text: bytes | None) -> int:
    """An exponent's value, clamped far beyond any that leaves a finite nonzero number."""
    if not text:
        return 0
    negative = text[:1] == b"-"
    digits = text.lstrip(b"+-").lstrip(b"0")
    if len(digits) > 9:
        return -(10**9) if negative else 10**9
    return -int(digits or b"0") if negative else int(digits or b"0")


def _decimal_int(digits: bytes) -> int:
    value = 0
    for start in range(0, len(digits), _CHUNK_DIGITS):
        chunk = digits[start : start + _CHUNK_DIGITS]
        value = value * 10 ** len(chunk) + int(chunk)
    return value


def _decimal_text(value: int) -> bytes:
    if value < 10**_CHUNK_DIGITS:
        return b"%d" % value
    high, low = divmod(value, 10**_CHUNK_DIGITS)
    return _decimal_text(high) + (b"%d" % low).rjust(_CHUNK_DIGITS, b"0")
