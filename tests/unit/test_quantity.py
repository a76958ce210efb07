"""Quantities behave as k8s.io/apimachinery/pkg/api/resource does; most tables are quantity_test.go's."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from vmplane.api.quantity import (
    ERR_FORMAT_WRONG,
    ERR_NUMERIC,
    ERR_OUT_OF_RANGE,
    ERR_SUFFIX,
    OPENAPI_PATTERN,
    Quantity,
    QuantityError,
)

MAX_INT64 = 2**63 - 1


def dec(mantissa: int, exponent: int) -> Fraction:
    """Mirror quantity_test.go's ``decQuantity(mantissa, exponent, ...)`` value."""
    return Fraction(mantissa) * Fraction(10) ** exponent


# TestQuantityParse: text -> (value, format), plus a few of ours marked below.
PARSE_CASES = [
    ("0", dec(0, 0), "DecimalSI"),
    ("0n", dec(0, 0), "DecimalSI"),
    ("0u", dec(0, 0), "DecimalSI"),
    ("0m", dec(0, 0), "DecimalSI"),
    ("0Ki", dec(0, 0), "BinarySI"),
    ("0k", dec(0, 0), "DecimalSI"),
    ("0Mi", dec(0, 0), "BinarySI"),
    ("0M", dec(0, 0), "DecimalSI"),
    ("0Gi", dec(0, 0), "BinarySI"),
    ("0G", dec(0, 0), "DecimalSI"),
    ("0Ti", dec(0, 0), "BinarySI"),
    ("0T", dec(0, 0), "DecimalSI"),
    ("1", dec(1, 0), "DecimalSI"),
    ("1Ki", dec(1024, 0), "BinarySI"),
    ("8Ki", dec(8 * 1024, 0), "BinarySI"),
    ("7Mi", dec(7 * 1024**2, 0), "BinarySI"),
    ("6Gi", dec(6 * 1024**3, 0), "BinarySI"),
    ("5Ti", dec(5 * 1024**4, 0), "BinarySI"),
    ("4Pi", dec(4 * 1024**5, 0), "BinarySI"),
    ("3Ei", dec(3 * 1024**6, 0), "BinarySI"),
    ("10Ti", dec(10 * 1024**4, 0), "BinarySI"),
    ("100Ti", dec(100 * 1024**4, 0), "BinarySI"),
    ("5n", dec(5, -9), "DecimalSI"),
    ("4u", dec(4, -6), "DecimalSI"),
    ("3m", dec(3, -3), "DecimalSI"),
    ("9", dec(9, 0), "DecimalSI"),
    ("8k", dec(8, 3), "DecimalSI"),
    ("50k", dec(5, 4), "DecimalSI"),
    ("7M", dec(7, 6), "DecimalSI"),
    ("6G", dec(6, 9), "DecimalSI"),
    ("5T", dec(5, 12), "DecimalSI"),
    ("40T", dec(4, 13), "DecimalSI"),
    ("300T", dec(3, 14), "DecimalSI"),
    ("2P", dec(2, 15), "DecimalSI"),
    ("1E", dec(1, 18), "DecimalSI"),
    ("1E-3", dec(1, -3), "DecimalExponent"),
    ("1e3", dec(1, 3), "DecimalExponent"),
    ("1E6", dec(1, 6), "DecimalExponent"),
    ("1e9", dec(1, 9), "DecimalExponent"),
    ("1E12", dec(1, 12), "DecimalExponent"),
    ("1e15", dec(1, 15), "DecimalExponent"),
    ("1E18", dec(1, 18), "DecimalExponent"),
    ("1e14", dec(1, 14), "DecimalExponent"),
    ("1e13", dec(1, 13), "DecimalExponent"),
    ("100.035k", dec(100035, 0), "DecimalSI"),
    ("0.001", dec(1, -3), "DecimalSI"),
    ("0.0005k", dec(5, -1), "DecimalSI"),
    ("0.005", dec(5, -3), "DecimalSI"),
    ("0.05", dec(5, -2), "DecimalSI"),
    ("0.5", dec(5, -1), "DecimalSI"),
    ("0.00050k", dec(5, -1), "DecimalSI"),
    ("0.00500", dec(5, -3), "DecimalSI"),
    ("0.05000", dec(5, -2), "DecimalSI"),
    ("0.50000", dec(5, -1), "DecimalSI"),
    ("0.5e0", dec(5, -1), "DecimalExponent"),
    ("0.5e-1", dec(5, -2), "DecimalExponent"),
    ("0.5e-2", dec(5, -3), "DecimalExponent"),
    ("10.035M", dec(10035, 3), "DecimalSI"),
    ("1.2e3", dec(12, 2), "DecimalExponent"),
    ("1.3E+6", dec(13, 5), "DecimalExponent"),
    ("1.40e9", dec(14, 8), "DecimalExponent"),
    ("1.53E12", dec(153, 10), "DecimalExponent"),
    ("1.6e15", dec(16, 14), "DecimalExponent"),
    ("1.7E18", dec(17, 17), "DecimalExponent"),
    ("9.01", dec(901, -2), "DecimalSI"),
    ("8.1k", dec(81, 2), "DecimalSI"),
    ("7.123456M", dec(7123456, 0), "DecimalSI"),
    ("6.987654321G", dec(6987654321, 0), "DecimalSI"),
    ("5.444T", dec(5444, 9), "DecimalSI"),
    ("40.1T", dec(401, 11), "DecimalSI"),
    ("300.2T", dec(3002, 11), "DecimalSI"),
    ("2.5P", dec(25, 14), "DecimalSI"),
    ("1.01E", dec(101, 16), "DecimalSI"),
    # Things that saturate or round (up, away from zero, to 1n).
    ("3.001n", dec(4, -9), "DecimalSI"),
    ("1.1E-9", dec(2, -9), "DecimalExponent"),
    ("0.0000000001", dec(1, -9), "DecimalSI"),
    ("0.0000000005", dec(1, -9), "DecimalSI"),
    ("0.00000000050", dec(1, -9), "DecimalSI"),
    ("0.5e-9", dec(1, -9), "DecimalExponent"),
    ("0.9n", dec(1, -9), "DecimalSI"),
    ("0.00000012345", dec(124, -9), "DecimalSI"),
    ("0.00000012354", dec(124, -9), "DecimalSI"),
    ("9Ei", dec(MAX_INT64, 0), "BinarySI"),
    ("9223372036854775807Ki", dec(MAX_INT64, 0), "BinarySI"),
    ("12E", dec(12, 18), "DecimalSI"),
    # Fractional binary quantities.
    ("100.035Ki", dec(10243584, -2), "BinarySI"),
    ("0.5Mi", dec(512 * 1024, 0), "BinarySI"),
    ("0.05Gi", dec(536870912, -1), "BinarySI"),
    ("0.025Ti", dec(274877906944, -1), "BinarySI"),
    # "Things written by trolls".
    ("0.000000000001Ki", dec(2, -9), "DecimalSI"),
    (".001", dec(1, -3), "DecimalSI"),
    (".0001k", dec(100, -3), "DecimalSI"),
    ("1.", dec(1, 0), "DecimalSI"),
    ("1.G", dec(1, 9), "DecimalSI"),
    # Ours: scanner corners that follow from quantity.go's int64 fast path.
    (".", dec(0, 0), "DecimalSI"),
    ("Ki", dec(0, 0), "BinarySI"),
    ("1e+3", dec(1, 3), "DecimalExponent"),
    ("1000E", dec(1, 21), "DecimalSI"),
]


@pytest.mark.parametrize(("text", "value", "fmt"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_value_and_format(text: str, value: Fraction, fmt: str) -> None:
    q = Quantity.parse(text)
    assert (q.value, q.format) == (value, fmt)


@pytest.mark.parametrize(("text", "value", "fmt"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_negative_negates_value_and_keeps_format(text: str, value: Fraction, fmt: str) -> None:
    q = Quantity.parse("-" + text)
    assert (q.value, q.format) == (-value, fmt)


@pytest.mark.parametrize(("text", "value", "fmt"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parse_explicit_plus_sign_changes_nothing(text: str, value: Fraction, fmt: str) -> None:
    q = Quantity.parse("+" + text)
    assert (q.value, q.format) == (value, fmt)


@pytest.mark.parametrize("text", ["1.5Gi", "1024Mi", "+1", "0.50000", "1e3"])
def test_parse_keeps_original_text(text: str) -> None:
    q = Quantity.parse(text)
    assert (q.text, str(q)) == (text, text)


NUMBER_CASES = [
    (2048, "2048", Fraction(2048), "DecimalSI"),
    (0, "0", Fraction(0), "DecimalSI"),
    (-3, "-3", Fraction(-3), "DecimalSI"),
    (0.5, "0.5", Fraction(1, 2), "DecimalSI"),
    (1e-05, "1e-05", Fraction(1, 100000), "DecimalExponent"),
    (1e20, "1e+20", Fraction(10**20), "DecimalExponent"),
]


@pytest.mark.parametrize(("number", "text", "value", "fmt"), NUMBER_CASES, ids=[c[1] for c in NUMBER_CASES])
def test_parse_number_reads_its_str(number: float, text: str, value: Fraction, fmt: str) -> None:
    q = Quantity.parse(number)
    assert (q.text, q.value, q.format) == (text, value, fmt)


# TestQuantityString (expected, alternate spellings), TestQuantityParseEmit, and the brief's examples.
CANONICAL_CASES = [
    ("1Gi", "1Gi"),
    ("1024Mi", "1Gi"),
    ("300Mi", "300Mi"),
    ("307200Ki", "300Mi"),
    ("6Ki", "6Ki"),
    ("1001Gi", "1001Gi"),
    ("1025024Mi", "1001Gi"),
    ("1Ti", "1Ti"),
    ("1024Gi", "1Ti"),
    ("5", "5"),
    ("5000m", "5"),
    ("500m", "500m"),
    ("0.5", "500m"),
    ("1G", "1G"),
    ("1000M", "1G"),
    ("0.001T", "1G"),
    ("1m", "1m"),
    ("1000u", "1m"),
    ("80m", "80m"),
    ("1080m", "1080m"),
    ("1.08", "1080m"),
    ("1080000000n", "1080m"),
    ("300M", "300M"),
    ("1T", "1T"),
    ("1E", "1E"),
    ("1e21", "1e21"),
    ("1000E", "1e21"),
    ("5000E", "5e21"),
    ("1000000E", "1e24"),
    ("1234567M", "1234567M"),
    ("1234567m", "1234567m"),
    ("3k", "3k"),
    ("1025", "1025"),
    ("0", "0"),
    ("00", "0"),
    ("1e9", "1e9"),
    (".001e12", "1e9"),
    ("1e-3", "1e-3"),
    ("0.001e0", "1e-3"),
    ("1e-9", "1e-9"),
    ("1000e-12", "1e-9"),
    ("80e-3", "80e-3"),
    ("300e6", "300e6"),
    ("1e12", "1e12"),
    ("1e3", "1e3"),
    ("3e3", "3e3"),
    ("1.3E+6", "1300e3"),
    ("1n", "1n"),
    ("80n", "80n"),
    ("1080n", "1080n"),
    ("1u", "1u"),
    ("80u", "80u"),
    ("1080u", "1080u"),
    ("1Ki", "1Ki"),
    ("1Mi", "1Mi"),
    (".001Ki", "1024m"),
    (".000001Ki", "1024u"),
    (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"),
    ("1.5Gi", "1536Mi"),
    ("1000m", "1"),
    ("2G", "2G"),
    ("12e6", "12e6"),
    # BinarySI below 1Ki, or with a fraction, prints as DecimalSI.
    ("0.5Ki", "512"),
    ("1.1Ki", "1126400m"),
    ("100.035Ki", "102435840m"),
    # Kubernetes keeps nano precision: "0.0001" is 100u, not 1m.
    ("0.0001", "100u"),
    ("9Ei", "9223372036854775807"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL_CASES, ids=[c[0] for c in CANONICAL_CASES])
def test_canonical(text: str, expected: str) -> None:
    assert Quantity.parse(text).canonical() == expected


NONZERO_CANONICAL_CASES = [c for c in CANONICAL_CASES if c[1] != "0"]


@pytest.mark.parametrize(
    ("text", "expected"), NONZERO_CANONICAL_CASES, ids=[c[0] for c in NONZERO_CANONICAL_CASES]
)
def test_canonical_of_negative_is_signed(text: str, expected: str) -> None:
    assert Quantity.parse("-" + text).canonical() == "-" + expected


VALUE_CASES = [
    ("1500m", 2, 1500),
    ("-1500m", -2, -1500),
    ("1Gi", 1073741824, 1073741824000),
    ("100.035Ki", 102436, 102435840),
    ("1n", 1, 1),
    ("-1n", -1, -1),
    ("0", 0, 0),
    ("12E", 12 * 10**18, 12 * 10**21),
]


@pytest.mark.parametrize(("text", "value", "milli"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_to_int_rounds_away_from_zero(text: str, value: int, milli: int) -> None:
    assert (Quantity.parse(text).to_int(), Quantity.parse(text).bytes()) == (value, value)


@pytest.mark.parametrize(("text", "value", "milli"), VALUE_CASES, ids=[c[0] for c in VALUE_CASES])
def test_milli_rounds_away_from_zero(text: str, value: int, milli: int) -> None:
    assert Quantity.parse(text).milli() == milli


FROM_BYTES_CASES = [
    (1073741824, "1Gi"),
    (1092616192, "1042Mi"),
    (1024, "1Ki"),
    (1024 * 1024, "1Mi"),
    (1025, "1025"),
    (1000, "1k"),  # under 1Ki BinarySI prints as DecimalSI, as NewQuantity(1000, BinarySI) does
    (5, "5"),
    (0, "0"),
    (-1024, "-1Ki"),
    (2**70, "1024Ei"),  # ours: Kubernetes has no suffix beyond Ei (and would print "1")
]


@pytest.mark.parametrize(("n", "text"), FROM_BYTES_CASES, ids=[c[1] for c in FROM_BYTES_CASES])
def test_from_bytes(n: int, text: str) -> None:
    q = Quantity.from_bytes(n)
    assert (q.text, q.value, q.format) == (text, Fraction(n), "BinarySI")


FROM_MILLI_CASES = [(1, "1m"), (200, "200m"), (1000, "1"), (1234000, "1234"), (1024, "1024m"), (-5, "-5m")]


@pytest.mark.parametrize(("m", "text"), FROM_MILLI_CASES, ids=[c[1] for c in FROM_MILLI_CASES])
def test_from_milli(m: int, text: str) -> None:
    q = Quantity.from_milli(m)
    assert (q.text, q.milli(), q.format) == (text, m, "DecimalSI")


COMPARE_CASES = [
    ("0", "0", 0),
    ("100m", "50m", 1),
    ("50m", "100m", -1),
    ("10000T", "100Gi", 1),
    ("1Gi", "1024Mi", 0),
    ("1", "1000m", 0),
    ("1e3", "1k", 0),
    ("1Ki", "1k", 1),
    ("-1", "0", -1),
    ("0Ki", "-0", 0),
]


@pytest.mark.parametrize(("x", "y", "cmp"), COMPARE_CASES, ids=[f"{c[0]} vs {c[1]}" for c in COMPARE_CASES])
def test_compare_by_value(x: str, y: str, cmp: int) -> None:
    a, b = Quantity.parse(x), Quantity.parse(y)
    assert ((a > b) - (a < b), a == b, a <= b, a >= b) == (cmp, cmp == 0, cmp <= 0, cmp >= 0)


def test_equal_quantities_hash_alike() -> None:
    assert {Quantity.parse("1Gi"), Quantity.parse("1024Mi"), Quantity.parse("1073741824")} == {
        Quantity.parse("1Gi")
    }


def test_quantity_never_equals_a_plain_number() -> None:
    assert Quantity.parse("1") != 1


ARITHMETIC_CASES = [
    ("1Gi", "+", "512Mi", "1536Mi", "BinarySI"),
    ("100m", "+", "0", "100m", "DecimalSI"),
    ("1Gi", "+", "0", "1Gi", "BinarySI"),
    ("0", "+", "1Gi", "1Gi", "BinarySI"),  # a zero receiver takes the other's format, as Add does
    ("0", "-", "1Gi", "-1Gi", "BinarySI"),
    ("1", "-", "100m", "900m", "DecimalSI"),
    ("1e3", "+", "1k", "2e3", "DecimalExponent"),
    ("1k", "+", "1e3", "2k", "DecimalSI"),
    ("1Gi", "-", "1Gi", "0", "BinarySI"),
    ("4Ei", "+", "4Ei", "8Ei", "BinarySI"),  # sums are not capped, as in Kubernetes
]


@pytest.mark.parametrize(
    ("x", "op", "y", "text", "fmt"), ARITHMETIC_CASES, ids=[f"{c[0]}{c[1]}{c[2]}" for c in ARITHMETIC_CASES]
)
def test_arithmetic_keeps_left_format_and_prints_canonical(
    x: str, op: str, y: str, text: str, fmt: str
) -> None:
    a, b = Quantity.parse(x), Quantity.parse(y)
    result = a + b if op == "+" else a - b
    assert (result.text, result.format) == (text, fmt)


def test_arithmetic_with_a_plain_number_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = Quantity.parse("1") + 1  # type: ignore[operator]


ERROR_CASES = [
    ("1.1.M", ERR_FORMAT_WRONG),
    ("1+1.0M", ERR_FORMAT_WRONG),
    ("0.1mi", ERR_SUFFIX),
    ("0.1am", ERR_FORMAT_WRONG),
    ("aoeu", ERR_FORMAT_WRONG),
    (".5i", ERR_SUFFIX),
    ("1i", ERR_SUFFIX),
    ("-3.01i", ERR_SUFFIX),
    ("-3.01e-", ERR_SUFFIX),
    (" 1", ERR_FORMAT_WRONG),
    ("1 ", ERR_FORMAT_WRONG),
    ("", ERR_FORMAT_WRONG),
    ("1e", ERR_SUFFIX),
    ("1MM", ERR_SUFFIX),
    ("12-3", ERR_SUFFIX),
    ("1e3.5", ERR_FORMAT_WRONG),
    ("1e99999999999999999999", ERR_SUFFIX),
    (".Ei", ERR_NUMERIC),
    (".e-10", ERR_NUMERIC),
    ("1e2000", ERR_OUT_OF_RANGE),
    ("1" * 1001, ERR_OUT_OF_RANGE),
]


@pytest.mark.parametrize(("text", "reason"), ERROR_CASES, ids=[repr(c[0])[:20] for c in ERROR_CASES])
def test_parse_error_names_text_and_kubernetes_reason(text: str, reason: str) -> None:
    with pytest.raises(QuantityError) as caught:
        Quantity.parse(text)
    assert (caught.value.text, caught.value.reason, str(caught.value)) == (
        text,
        reason,
        f"cannot parse {text!r}: {reason}",
    )


def test_format_error_message_is_kubernetes_verbatim() -> None:
    assert ERR_FORMAT_WRONG == (
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )


@pytest.mark.parametrize("bad", [True, None, float("nan"), [1]], ids=["bool", "None", "nan", "list"])
def test_parse_rejects_non_quantities(bad: object) -> None:
    with pytest.raises(QuantityError):
        Quantity.parse(bad)  # type: ignore[arg-type]


def test_quantity_is_immutable() -> None:
    q = Quantity.parse("1Gi")
    with pytest.raises(dataclasses.FrozenInstanceError):
        q.text = "2Gi"  # type: ignore[misc]


def test_value_finer_than_nano_is_rejected() -> None:
    with pytest.raises(QuantityError):
        Quantity(Fraction(1, 3), "1/3", "DecimalSI")


def test_repr_is_evaluable() -> None:
    assert repr(Quantity.parse("1.5Gi")) == "Quantity.parse('1.5Gi')"


class Memory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    guest: Quantity | None = None


ROUND_TRIP_CASES = [
    ({"guest": "1Gi"}, '{"guest":"1Gi"}'),
    ({"guest": "1.5Gi"}, '{"guest":"1.5Gi"}'),
    ({"guest": 2048}, '{"guest":"2048"}'),
    ({"guest": " 1Gi "}, '{"guest":"1Gi"}'),  # UnmarshalJSON trims whitespace
    ({"guest": None}, '{"guest":null}'),
]


@pytest.mark.parametrize(("data", "wire"), ROUND_TRIP_CASES, ids=["1Gi", "1.5Gi", "int", "spaces", "null"])
def test_pydantic_serialises_original_text(data: dict[str, object], wire: str) -> None:
    model = Memory.model_validate(data)
    assert (model.model_dump_json(), Memory.model_validate_json(wire)) == (wire, model)


def test_pydantic_python_dump_is_text() -> None:
    assert Memory.model_validate({"guest": "1.5Gi"}).model_dump() == {"guest": "1.5Gi"}


def test_pydantic_accepts_a_quantity() -> None:
    q = Quantity.parse("1Gi")
    assert Memory(guest=q).guest is q


@pytest.mark.parametrize(
    ("bad", "message"),
    [("1Gx", ERR_FORMAT_WRONG), ("1mi", ERR_SUFFIX), (True, "a quantity must be a string or a number")],
    ids=["format", "suffix", "bool"],
)
def test_pydantic_error_carries_kubernetes_message(bad: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Memory.model_validate({"guest": bad})
    (error,) = caught.value.errors()
    assert (error["loc"], error["type"], message in error["msg"]) == (("guest",), "value_error", True)


def test_json_schema_is_kubernetes_int_or_string() -> None:
    schema = Memory.model_json_schema()["properties"]["guest"]["anyOf"][0]
    assert schema == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "pattern": OPENAPI_PATTERN,
        "x-kubernetes-int-or-string": True,
    }
