"""Kubernetes resource quantities (``1Gi``, ``500m``, ``12e6``), read and printed as apimachinery does.

Written by hand because no maintained Python library reproduces ``k8s.io/apimachinery/pkg/api/resource``:
its scanner quirks (``"."`` is zero, ``" 1"`` is an error), rounding up to nano, the BinarySI cap at
2^63-1, and the canonical-suffix rules. Values are exact ``Fraction``s, never floats.

Unlike Kubernetes, a parsed quantity keeps the text it was given (``str(q)``, JSON serialisation), so
manifests round-trip losslessly; ``canonical()`` gives what the API server would print.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import total_ordering
from typing import Any, Final, Literal

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "ERR_FORMAT_WRONG",
    "ERR_NUMERIC",
    "ERR_OUT_OF_RANGE",
    "ERR_SUFFIX",
    "OPENAPI_PATTERN",
    "Quantity",
    "QuantityError",
    "QuantityFormat",
]

QuantityFormat = Literal["BinarySI", "DecimalSI", "DecimalExponent"]

# Kubernetes' own error texts (quantity.go ErrFormatWrong / ErrNumeric / ErrSuffix), kept verbatim so
# users can search for them.
SPLIT_RE: Final = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
ERR_FORMAT_WRONG: Final = f"quantities must match the regular expression '{SPLIT_RE}'"
ERR_NUMERIC: Final = "unable to parse numeric part of quantity"
ERR_SUFFIX: Final = "unable to parse quantity's suffix"
# Ours: Kubernetes wraps huge exponents into int32; we refuse them rather than compute 10**(2**31).
ERR_OUT_OF_RANGE: Final = "vmplane accepts at most 1000 digits and exponents between -1000 and 1000"

# The pattern controller-gen publishes for quantities in CRD schemas (KubeVirt's included).
OPENAPI_PATTERN: Final = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)"
    r"|(\.[0-9]+))))?$"
)

# Possessive quantifiers mirror quantity.go's hand-written, non-backtracking scanner.
_SCAN: Final = re.compile(
    r"(?P<sign>[+-]?)(?P<num>[0-9]*+)(?:\.(?P<denom>[0-9]*+))?+(?P<suffix>[eEinumkKMGTP]*+[-+]?+[0-9]*+)"
)
_DECIMAL_SUFFIXES: Final = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT: Final = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER: Final = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
_NANO: Final = 10**9
_MAX_BINARY: Final = 2**63 - 1  # parsing silently caps BinarySI here, like Kubernetes
_MAX_DIGITS: Final = 1000  # bound for digits and |exponent|; keeps arithmetic and str() cheap


class QuantityError(ValueError):
    """A text is not a Kubernetes quantity; ``reason`` is Kubernetes' own message."""

    def __init__(self, text: object, reason: str) -> None:
        self.text = text
        self.reason = reason
        super().__init__(f"cannot parse {text!r}: {reason}")


def _round_up_nano(value: Fraction) -> Fraction:
    """Round away from zero to a multiple of 1n: Kubernetes would rather grant a tiny resource than none."""
    scaled = value * _NANO
    if scaled.denominator == 1:
        return value
    magnitude = -(-abs(scaled.numerator) // scaled.denominator)
    return Fraction(magnitude if value > 0 else -magnitude, _NANO)


def _ceil_away(value: Fraction) -> int:
    """Round to an integer away from zero, as apimachinery's ``AsScale`` documents for ``Value()``."""
    magnitude = -(-abs(value.numerator) // value.denominator)
    return magnitude if value >= 0 else -magnitude


def _interpret(suffix: str) -> tuple[int, int, QuantityFormat] | None:
    """Return (base, exponent, format) for a suffix, or None; mirrors suffix.go's ``interpret``."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], "DecimalSI"
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], "BinarySI"
    # Go's strconv.ParseInt(..., 64): a sign, then digits that fit an int64.
    if len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]{1,20}", suffix[1:]):
        exponent = int(suffix[1:])
        if -(2**63) <= exponent < 2**63:
            return 10, exponent, "DecimalExponent"
    return None


def _parse(text: str) -> tuple[Fraction, QuantityFormat]:
    """Parse like ``resource.ParseQuantity``; return the exact value and the format to print it in."""
    if text == "":
        raise QuantityError(text, ERR_FORMAT_WRONG)
    if text == "0":
        return Fraction(0), "DecimalSI"
    match = _SCAN.fullmatch(text)
    if match is None:
        raise QuantityError(text, ERR_FORMAT_WRONG)
    num = match["num"].lstrip("0") or "0"
    denom = match["denom"] or ""
    interpreted = _interpret(match["suffix"])
    if interpreted is None:
        raise QuantityError(text, ERR_SUFFIX)
    base, exponent, fmt = interpreted
    if len(num) + len(denom) > _MAX_DIGITS or abs(exponent) > _MAX_DIGITS:
        raise QuantityError(text, ERR_OUT_OF_RANGE)
    # Kubernetes takes an int64 fast path when the digits fit; only its slow path (inf.Dec) insists on
    # at least one digit, so "." and "Ki" are zero while ".Ei" and ".e-10" are errors.
    if base == 10:
        fast = len(num) + len(denom) <= 18 and exponent - len(denom) >= -9
    else:
        fast = not denom and 15 - len(num) - exponent * 3 // 10 - 1 >= 0
    if not fast and not re.search("[0-9]", match["num"] + (match["denom"] or "")):
        raise QuantityError(text, ERR_NUMERIC)
    magnitude = Fraction(int(num + denom), 10 ** len(denom))
    magnitude *= Fraction(10) ** exponent if base == 10 else 2**exponent
    magnitude = _round_up_nano(magnitude)
    if fmt == "BinarySI":
        magnitude = min(magnitude, Fraction(_MAX_BINARY))
        if 0 < magnitude < 1:
            fmt = "DecimalSI"  # a binary suffix on a fraction of one would only confuse
    return (-magnitude if match["sign"] == "-" else magnitude), fmt


def _format(value: Fraction, fmt: QuantityFormat) -> str:
    """Print like ``Quantity.String()``: no fraction digits, no lost precision, the largest suffix."""
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    if fmt == "BinarySI" and (abs(value) < 1024 or value.denominator != 1):
        fmt = "DecimalSI"  # 1023 as "1023" and 1.5Ki as "1536" read better; fractions need decimals
    if fmt == "BinarySI":
        mantissa, power = abs(value.numerator), 0
        # Stop at Ei: Kubernetes has no larger binary suffix (and would drop the exponent).
        while mantissa % 1024 == 0 and power < len(_BINARY_BY_POWER) - 1:
            mantissa, power = mantissa // 1024, power + 1
        return f"{sign}{mantissa}{_BINARY_BY_POWER[power]}"
    mantissa, exponent = abs(value.numerator) * (_NANO // value.denominator), -9
    while mantissa % 10 == 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    while exponent % 3:
        mantissa, exponent = mantissa * 10, exponent - 1
    if fmt == "DecimalSI" and exponent in _DECIMAL_BY_EXPONENT:
        return f"{sign}{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"
    # DecimalExponent, or DecimalSI beyond "E": Kubernetes falls back to "e" rather than drop 10^21.
    return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")


@total_ordering
@dataclass(frozen=True, slots=True, eq=False, repr=False)
class Quantity:
    """An exact Kubernetes quantity that remembers the text it came from.

    Equality, ordering and hashing use the value only: ``1Gi == 1024Mi``, as ``Quantity.Cmp`` does.
    """

    value: Fraction
    text: str
    format: QuantityFormat

    def __post_init__(self) -> None:
        if not isinstance(self.value, Fraction) or _NANO % self.value.denominator:
            raise QuantityError(self.value, "a quantity's value must be a Fraction in whole nanounits")

    @classmethod
    def parse(cls, text: str | int | float) -> Quantity:
        """Parse a quantity as Kubernetes does; ints and floats are read from their ``str()``."""
        if isinstance(text, bool) or not isinstance(text, str | int | float):
            raise QuantityError(text, "a quantity must be a string or a number")  # e.g. YAML's true
        return _parse_cached(str(text))

    @classmethod
    def _of(cls, value: Fraction, fmt: QuantityFormat) -> Quantity:
        return cls(value, _format(value, fmt), fmt)

    @classmethod
    def from_bytes(cls, n: int) -> Quantity:
        """A BinarySI byte count in canonical text: 1073741824 -> ``1Gi``, 1000 -> ``1k`` (under 1Ki)."""
        return cls._of(Fraction(n), "BinarySI")

    @classmethod
    def from_milli(cls, m: int) -> Quantity:
        """A DecimalSI quantity of ``m`` thousandths: 200 -> ``200m``, 1000 -> ``1``."""
        return cls._of(Fraction(m, 1000), "DecimalSI")

    def canonical(self) -> str:
        """The text the Kubernetes API server would print for this quantity (``1.5Gi`` -> ``1536Mi``)."""
        return _format(self.value, self.format)

    def to_int(self) -> int:
        """``Value()``: the value rounded to an integer away from zero."""
        return _ceil_away(self.value)

    def milli(self) -> int:
        """``MilliValue()``: the value in thousandths, rounded away from zero."""
        return _ceil_away(self.value * 1000)

    def bytes(self) -> int:
        """The value in bytes, rounded up (an alias of ``to_int`` for memory sizes)."""
        return self.to_int()

    def __add__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        # Kubernetes keeps the receiver's format, unless the receiver is zero (so 0 + 1Gi stays 1Gi).
        return Quantity._of(self.value + other.value, other.format if self.value == 0 else self.format)

    def __sub__(self, other: Quantity) -> Quantity:
        if not isinstance(other, Quantity):
            return NotImplemented
        return Quantity._of(self.value - other.value, other.format if self.value == 0 else self.format)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value == other.value

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Quantity):
            return NotImplemented
        return self.value < other.value

    def __hash__(self) -> int:
        return hash(self.value)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Quantity.parse({self.text!r})"

    @classmethod
    def _validate(cls, raw: object) -> Quantity:
        if isinstance(raw, Quantity):
            return raw
        if isinstance(raw, str):
            # Kubernetes' UnmarshalJSON trims surrounding whitespace; ParseQuantity itself does not.
            return cls.parse(raw.strip())
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return cls.parse(raw)
        raise QuantityError(raw, "a quantity must be a string or a number")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate str (trimmed, as UnmarshalJSON does), int or float; serialise as the original text."""
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                str, return_schema=core_schema.str_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The schema controller-gen publishes for quantities, so CRDs stay structural and explainable."""
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": OPENAPI_PATTERN,
            "x-kubernetes-int-or-string": True,
        }


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Quantity:
    # Quantities are immutable and manifests repeat the same few texts ("1Gi", "100m"), so every
    # validation of a spec would otherwise re-parse them.
    value, fmt = _parse(text)
    return Quantity(value, text, fmt)
