"""JSON and YAML decoding of request bodies with a nesting limit and duplicate-key detection (pure).

Why a limit. Everything after decoding (merge patch, apply, admission, ``deepcopy``, the encoder)
recurses on the object; Python's recursion limit turns a body nested ~1,000 deep into a
``RecursionError`` (a 500) and PyYAML spends seconds of the event loop composing one nested 10,000
deep. kube-apiserver's decoders stop at 10,000 levels (Go's ``encoding/json`` and go-yaml's
``exceeded max depth of 10000``); Python cannot recurse that deep, so vmplane stops at
:data:`MAX_DEPTH` = 100 levels, for every format alike. The deepest object vmplane models
(``spec.template.spec.domain.devices.disks[0].disk.bus`` and the like) is under 15 levels and
anything deeper under ``x-kubernetes-preserve-unknown-fields`` is an attack, not a manifest.

YAML is refused while it is being scanned and composed (a depth-counting loader), so a deep document
costs at most 100 levels of parsing; JSON is decoded by the C decoder (a ``RecursionError`` past ~1,000
levels is caught) and then measured without recursion.

Duplicate keys. Go's strict decoder (``sigs.k8s.io/json``) reports ``duplicate field "a.b"``;
kube-apiserver refuses them under ``fieldValidation=Strict`` and warns under ``Warn``. Python's
decoders keep the last value silently, so :func:`load_json` and :func:`load_yaml` collect the
paths when asked.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from vmplane.apiserver import status as st

__all__ = ["MAX_DEPTH", "BodyError", "check_depth", "depth_exceeded", "load_json", "load_yaml"]

MAX_DEPTH = 100


class BodyError(ValueError):
    """A body that cannot be decoded; the message is the client's."""


def depth_exceeded(what: str, limit: int = MAX_DEPTH) -> st.ApiError:
    return st.bad_request(f"error decoding {what}: exceeded max depth of {limit} (nesting is limited)")


def _too_deep(obj: Any, limit: int, budget: int | None = None) -> bool:
    """True when ``obj`` nests more than ``limit`` containers deep; iterative, stops early.

    ``budget`` bounds the containers visited: YAML aliases can make a small document expand into
    an exponential tree (or a cycle, which is "too deep" too); past the budget it is refused.
    """
    stack: list[tuple[Any, int]] = [(obj, 1)]
    visited = 0
    while stack:
        value, depth = stack.pop()
        visited += 1
        if budget is not None and visited > budget:
            return True
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def check_depth(obj: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuse an object (a patch's result, say) nested past ``limit`` with a 400."""
    if _too_deep(obj, limit):
        raise depth_exceeded(what, limit)


def _path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _duplicate_paths(obj: Any, marks: dict[int, list[str]]) -> list[str]:
    found: list[str] = []
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            found += [_path(path, key) for key in marks.get(id(value), [])]
            stack.extend((child, _path(path, key)) for key, child in value.items())
        elif isinstance(value, list):
            stack.extend((child, _path(path, i)) for i, child in enumerate(value))
    return sorted(found)


def load_json(
    body: bytes | str, *, what: str = "JSON", duplicates: list[str] | None = None, limit: int = MAX_DEPTH
) -> Any:
    """Decode JSON; too deep is a 400 ``ApiError``, malformed a ``BodyError``.

    With ``duplicates`` (a list to fill), the paths of keys an object repeats are appended to it.
    """
    marks: dict[int, list[str]] = {}

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result = dict(items)
        if len(result) != len(items):
            seen: set[str] = set()
            repeated = [k for k, _ in items if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
            marks[id(result)] = sorted(set(repeated))
            kept.append(result)  # keep it alive so that its id stays unique until the walk
        return result

    kept: list[dict[str, Any]] = []
    try:
        obj = json.loads(body, object_pairs_hook=pairs) if duplicates is not None else json.loads(body)
    except RecursionError as err:
        raise depth_exceeded(what, limit) from err
    except (ValueError, UnicodeDecodeError) as err:
        raise BodyError(str(err)) from err
    if _too_deep(obj, limit):
        raise depth_exceeded(what, limit)
    if duplicates is not None and marks:
        duplicates += _duplicate_paths(obj, marks)
    return obj


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader that refuses a document nested past ``limit`` while composing it."""

    limit = MAX_DEPTH

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self.duplicates: list[str] = []
        self._path: list[str | int] = []

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > self.limit:
                raise _TooDeep()
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner looks up to 1,024 characters ahead for a possible simple key at every '[' or
        # '{', and checks each open one at each step: 10,000 '[' cost 0.5 s before composing began.
        if self.flow_level >= self.limit:
            raise _TooDeep()
        super().fetch_flow_collection_start(token_class)  # type: ignore[no-untyped-call]

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key in seen:
                    self.duplicates.append(f"{key} (line {key_node.start_mark.line + 1})")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _TooDeep(Exception):
    pass


def load_yaml(
    body: bytes | str, *, what: str = "YAML", duplicates: list[str] | None = None, limit: int = MAX_DEPTH
) -> Any:
    """Decode one YAML document (safe tags only); too deep is a 400 ``ApiError``, malformed a ``BodyError``.

    Duplicate mapping keys are reported as ``key (line N)``: the loader has no object path.
    """
    loader = _DepthLimitedLoader(body)
    loader.limit = limit
    try:
        try:
            obj = loader.get_single_data()
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except (_TooDeep, RecursionError) as err:
        raise depth_exceeded(what, limit) from err
    except (yaml.YAMLError, UnicodeDecodeError, ValueError) as err:
        raise BodyError(str(err)) from err
    if _too_deep(obj, limit, budget=max(10_000, 2 * len(body))):  # aliases expand, or cycle
        raise depth_exceeded(what, limit)
    if duplicates is not None:
        duplicates += loader.duplicates
    return obj
