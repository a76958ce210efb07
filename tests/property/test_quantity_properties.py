"""Invariants of quantities over generated texts: canonical forms re-parse, and values act like Fractions."""

from __future__ import annotations

import re
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from vmplane.api.quantity import OPENAPI_PATTERN, Quantity

SUFFIXES = ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
DIGITS = st.text(alphabet="0123456789", max_size=12)


@st.composite
def quantity_texts(draw: st.DrawFn) -> str:
    """Well-formed quantity texts, including the odd spellings Kubernetes accepts (``.5``, ``1.``, ``+0``)."""
    sign = draw(st.sampled_from(["", "+", "-"]))
    whole = draw(DIGITS)
    fraction = draw(st.none() | DIGITS)
    if not whole and not fraction:
        whole = "0"
    number = whole if fraction is None else f"{whole}.{fraction}"
    suffix = draw(
        st.sampled_from(SUFFIXES)
        | st.builds(
            "{}{}{}".format,
            st.sampled_from("eE"),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 24).map(str),
        )
    )
    return sign + number + suffix


quantities = quantity_texts().map(Quantity.parse)


@settings(max_examples=500)
@given(quantities)
def test_canonical_parses_back_to_the_same_value(q: Quantity) -> None:
    assert Quantity.parse(q.canonical()) == q


@settings(max_examples=500)
@given(quantities)
def test_canonical_is_idempotent(q: Quantity) -> None:
    canonical = q.canonical()
    assert Quantity.parse(canonical).canonical() == canonical


@settings(max_examples=500)
@given(quantities)
def test_canonical_matches_the_published_schema_pattern(q: Quantity) -> None:
    assert re.fullmatch(OPENAPI_PATTERN, q.canonical())


@settings(max_examples=500)
@given(quantity_texts().filter(lambda text: not text.endswith("i")))
def test_decimal_value_rounds_up_to_at_most_one_nano(text: str) -> None:
    q = Quantity.parse(text)
    exact = _exact_decimal(text)
    assert abs(exact) <= abs(q.value) < abs(exact) + Fraction(1, 10**9)


@settings(max_examples=500)
@given(quantities, quantities)
def test_ordering_agrees_with_fraction_ordering(a: Quantity, b: Quantity) -> None:
    assert (a < b, a <= b, a == b, a >= b, a > b) == (
        a.value < b.value,
        a.value <= b.value,
        a.value == b.value,
        a.value >= b.value,
        a.value > b.value,
    )


@settings(max_examples=500)
@given(quantities, quantities)
def test_equal_quantities_hash_alike(a: Quantity, b: Quantity) -> None:
    assert a != b or hash(a) == hash(b)


@settings(max_examples=500)
@given(st.integers(-(2**70), 2**70))
def test_from_bytes_keeps_the_byte_count(n: int) -> None:
    assert Quantity.from_bytes(n).bytes() == n


@settings(max_examples=500)
@given(st.integers(-(2**63) + 1, 2**63 - 1))
def test_from_bytes_text_parses_back_to_the_byte_count(n: int) -> None:
    assert Quantity.parse(Quantity.from_bytes(n).text).bytes() == n


@settings(max_examples=500)
@given(st.integers(-(10**15), 10**15))
def test_from_milli_keeps_the_milli_count(m: int) -> None:
    assert Quantity.parse(Quantity.from_milli(m).text).milli() == m


@settings(max_examples=500)
@given(quantities, quantities)
def test_add_agrees_with_fraction_arithmetic(a: Quantity, b: Quantity) -> None:
    total = a + b
    assert (total.value, total.text) == (a.value + b.value, total.canonical())


@settings(max_examples=500)
@given(quantities, quantities)
def test_sub_agrees_with_fraction_arithmetic(a: Quantity, b: Quantity) -> None:
    difference = a - b
    assert (difference.value, difference.text) == (a.value - b.value, difference.canonical())


@settings(max_examples=500)
@given(quantities)
def test_to_int_and_milli_are_ceilings_away_from_zero(q: Quantity) -> None:
    for scaled, result in ((q.value, q.to_int()), (q.value * 1000, q.milli())):
        assert abs(scaled) <= abs(result) < abs(scaled) + 1
        assert result == 0 or (result > 0) == (scaled > 0)


def _exact_decimal(text: str) -> Fraction:
    """The unrounded value of a decimal quantity text, computed independently of the module's scanner."""
    match = re.fullmatch(r"([+-]?)([0-9]*)(?:\.([0-9]*))?([a-zA-Z]?)([+-]?[0-9]*)", text)
    assert match is not None
    sign, whole, fraction, letter, exponent = match.groups()
    digits = (whole or "0") + (fraction or "")
    value = Fraction(int(digits), 10 ** len(fraction or ""))
    powers = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
    power = int(exponent) if letter in ("e", "E") and exponent else powers[letter]
    value *= Fraction(10) ** power
    return -value if sign == "-" else value
