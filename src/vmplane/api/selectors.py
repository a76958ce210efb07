"""Label and field selectors, parsed as ``k8s.io/apimachinery`` parses them.

Label selectors: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``k``, ``!k``,
``k>1``, ``k<1``. Field selectors: ``f=v``, ``f==v``, ``f!=v`` on the fields a kind declares.
No library parses these in Python, so this small parser is written here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FieldRequirement",
    "LabelRequirement",
    "SelectorError",
    "matches_fields",
    "matches_labels",
    "parse_field_selector",
    "parse_label_selector",
]

#: An object as its JSON, as the store and the API hand it over.
JsonObject = Mapping[str, Any]

LabelOp = Literal["=", "!=", "in", "notin", "exists", "!", ">", "<"]


class SelectorError(ValueError):
    """A selector that does not parse; the message is what Kubernetes reports."""


@dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    op: LabelOp
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        checks: dict[str, Callable[[], bool]] = {
            "=": lambda: present and value in self.values,
            "in": lambda: present and value in self.values,
            "!=": lambda: not present or value not in self.values,
            "notin": lambda: not present or value not in self.values,
            "exists": lambda: present,
            "!": lambda: not present,
            ">": lambda: _compare(value, self.values, greater=True),
            "<": lambda: _compare(value, self.values, greater=False),
        }
        return checks[self.op]()


def _compare(value: str | None, bounds: frozenset[str], *, greater: bool) -> bool:
    if value is None:
        return False
    try:
        actual, bound = int(value), int(next(iter(bounds)))
    except ValueError:
        return False
    return actual > bound if greater else actual < bound


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\((.*)\)\s*$")
_CMP_RE = re.compile(r"^\s*(!?)\s*([^=!<>\s]+)\s*(==|=|!=|>|<)?\s*(.*?)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _check_key(key: str) -> str:
    if not _KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise SelectorError(f"unable to parse requirement: invalid label value: {value!r}")
    return value


def _parse_requirement(term: str) -> LabelRequirement:
    set_match = _SET_RE.match(term)
    if set_match:
        key, op, raw_values = set_match.group(1), set_match.group(3), set_match.group(4)
        values = frozenset(_check_value(v.strip()) for v in raw_values.split(","))
        return LabelRequirement(_check_key(key), "in" if op == "in" else "notin", values)
    cmp_match = _CMP_RE.match(term)
    if not cmp_match:
        raise SelectorError(f"unable to parse requirement: {term!r}")
    negated, key, op, value = cmp_match.groups()
    _check_key(key)
    if negated:
        if op or value:
            raise SelectorError(f"unable to parse requirement: {term!r}")
        return LabelRequirement(key, "!")
    if op is None:
        if value:
            raise SelectorError(
                f"unable to parse requirement: found '{value}', expected: '=', '!=', '==', 'in', notin'"
            )
        return LabelRequirement(key, "exists")
    if op in (">", "<"):
        if not value.lstrip("-").isdigit():
            raise SelectorError(
                f"unable to parse requirement: for 'Gt', 'Lt' operators, the value "
                f"must be an integer: {value!r}"
            )
        return LabelRequirement(key, op, frozenset({value}))  # type: ignore[arg-type]
    return LabelRequirement(key, "!=" if op == "!=" else "=", frozenset({_check_value(value)}))


def parse_label_selector(text: str | None) -> tuple[LabelRequirement, ...]:
    """Parse a ``labelSelector`` query value; an empty selector matches everything."""
    if not text or not text.strip():
        return ()
    terms = _split_top_level(text)
    if any(not term.strip() for term in terms):
        raise SelectorError(f"unable to parse requirement: empty term in {text!r}")
    return tuple(_parse_requirement(term) for term in terms)


def matches_labels(requirements: tuple[LabelRequirement, ...], obj: JsonObject) -> bool:
    labels: Mapping[str, str] = obj.get("metadata", {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool

    def matches(self, obj: JsonObject) -> bool:
        return (_field_value(obj, self.field) == self.value) == self.equal


def _field_value(obj: JsonObject, path: str) -> str:
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, dict) and path == "source":
        return str(current.get("component", ""))
    return str(current)


BASE_FIELDS = ("metadata.name", "metadata.namespace")


def parse_field_selector(
    text: str | None, allowed: tuple[str, ...] = (), *, any_field: bool = False
) -> tuple[FieldRequirement, ...]:
    """Parse a ``fieldSelector``; fields outside ``metadata.name``/``namespace`` and ``allowed`` fail
    unless ``any_field`` (a client filtering its own cache, which has every field at hand)."""
    if not text or not text.strip():
        return ()
    requirements: list[FieldRequirement] = []
    for term in text.split(","):
        match = re.match(r"^\s*([^=!\s]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, op, value = match.groups()
        if not any_field and field not in BASE_FIELDS and field not in allowed:
            raise SelectorError(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, value, op != "!="))
    return tuple(requirements)


def matches_fields(requirements: tuple[FieldRequirement, ...], obj: JsonObject) -> bool:
    return all(r.matches(obj) for r in requirements)
