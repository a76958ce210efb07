"""``ObjectMeta`` rules every kind follows, as apimachinery's ``ValidateObjectMeta`` has them (pure).

Names, namespaces, ``generateName``, label keys and values, annotation keys and the 256 KiB total
size of annotations, with apimachinery's own messages (``k8s.io/apimachinery/pkg/util/validation``
and ``pkg/api/validation/objectmeta.go``), so that a client sees what kube-apiserver would say. It
reads the wire mapping rather than a typed model so that every kind the server serves, typed or
not, is held to the same rules.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal

from vmplane.api.errors import CauseType, FieldCause

__all__ = [
    "TOTAL_ANNOTATION_SIZE_LIMIT",
    "NameRule",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "label_value_errors",
    "metadata_causes",
    "qualified_name_errors",
]

NameRule = Literal["subdomain", "label"]
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024

_DNS_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_FMT = _DNS_LABEL_FMT + r"(\." + _DNS_LABEL_FMT + ")*"
_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QUALIFIED_NAME_FMT + ")?"
_DNS_LABEL = re.compile(_DNS_LABEL_FMT)
_DNS_SUBDOMAIN = re.compile(_DNS_SUBDOMAIN_FMT)
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)

_DNS_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_DNS_LABEL_FMT}')"
)
_DNS_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_DNS_SUBDOMAIN_FMT}')"
)
_QUALIFIED_NAME_MESSAGE = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation "
    f"is '{_QUALIFIED_NAME_FMT}')"
)
_LABEL_VALUE_MESSAGE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
    f"'12345', regex used for validation is '{_LABEL_VALUE_FMT}')"
)


def _max_length(limit: int) -> str:
    return f"must be no more than {limit} characters"


def dns1123_label_errors(value: str) -> list[str]:
    """``IsDNS1123Label``."""
    errors = [_max_length(63)] if len(value) > 63 else []
    if not _DNS_LABEL.fullmatch(value):
        errors.append(_DNS_LABEL_MESSAGE)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``."""
    errors = [_max_length(253)] if len(value) > 253 else []
    if not _DNS_SUBDOMAIN.fullmatch(value):
        errors.append(_DNS_SUBDOMAIN_MESSAGE)
    return errors


def qualified_name_errors(value: str) -> list[str]:
    """``IsQualifiedName``: an optional DNS-subdomain prefix and ``/``, then a name of at most 63."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errors: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors = ["prefix part must be non-empty"]
        else:
            errors = ["prefix part " + message for message in dns1123_subdomain_errors(prefix)]
    else:
        return [
            "a qualified name "
            + _QUALIFIED_NAME_MESSAGE.replace("')", "') with an optional DNS subdomain prefix and '/' ")
            + "(e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + _max_length(63))
    if name and not _QUALIFIED_NAME.fullmatch(name):
        errors.append("name part " + _QUALIFIED_NAME_MESSAGE)
    return errors


def label_value_errors(value: str) -> list[str]:
    """``IsValidLabelValue``."""
    errors = [_max_length(63)] if len(value) > 63 else []
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(_LABEL_VALUE_MESSAGE)
    return errors


def _invalid(field: str, value: Any, message: str) -> FieldCause:
    return FieldCause(field, f"Invalid value: {json.dumps(value)}: {message}")


def _string_map(metadata: Mapping[str, Any], key: str) -> tuple[dict[str, str], list[FieldCause]]:
    value = metadata.get(key)
    if value is None:
        return {}, []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return {}, [FieldCause(f"metadata.{key}", "Invalid value: must be a map of strings to strings")]
    return value, []


def _label_causes(labels: Mapping[str, str]) -> list[FieldCause]:
    causes: list[FieldCause] = []
    for key, value in labels.items():
        causes += [_invalid("metadata.labels", key, m) for m in qualified_name_errors(key)]
        causes += [_invalid("metadata.labels", value, m) for m in label_value_errors(value)]
    return causes


def _annotation_causes(annotations: Mapping[str, str]) -> list[FieldCause]:
    causes: list[FieldCause] = []
    total = 0
    for key, value in annotations.items():
        causes += [_invalid("metadata.annotations", key, m) for m in qualified_name_errors(key.lower())]
        total += len(key.encode()) + len(value.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        causes.append(
            FieldCause(
                "metadata.annotations",
                f"Too long: must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes",
                CauseType.FIELD_VALUE_TOO_LONG,
            )
        )
    return causes


def _owner_reference_causes(value: Any) -> list[FieldCause]:
    """``ValidateOwnerReferences``: apiVersion, kind, name and uid are required strings, the flags
    booleans, and at most one reference is the controller."""
    if value is None:
        return []
    field = "metadata.ownerReferences"
    if not isinstance(value, list):
        return [FieldCause(field, "Invalid value: must be a list of owner references")]
    causes: list[FieldCause] = []
    first_controller = ""
    for index, reference in enumerate(value):
        if not isinstance(reference, dict):
            causes.append(FieldCause(f"{field}[{index}]", "Invalid value: must be an object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            item = reference.get(key)
            if not isinstance(item, str) or not item:
                causes.append(
                    FieldCause(f"{field}[{index}].{key}", "Required value", CauseType.FIELD_VALUE_REQUIRED)
                )
        for key in ("controller", "blockOwnerDeletion"):
            flag = reference.get(key)
            if flag is not None and not isinstance(flag, bool):
                causes.append(FieldCause(f"{field}[{index}].{key}", "Invalid value: must be a boolean"))
        if reference.get("controller") is True:
            current = f"{reference.get('kind')}/{reference.get('name')}"
            if first_controller:
                causes.append(
                    FieldCause(
                        field,
                        'Invalid value: Only one reference can have Controller set to true. Found "true" in '
                        f"references for {first_controller} and {current}",
                    )
                )
            else:
                first_controller = current
    return causes


def _name_errors(value: str, rule: NameRule, *, prefix: bool) -> list[str]:
    if prefix:  # a generateName may end in '-': the random suffix follows it
        value = value[:-1] + "a" if value.endswith("-") else value
    return dns1123_label_errors(value) if rule == "label" else dns1123_subdomain_errors(value)


def metadata_causes(
    metadata: Mapping[str, Any], *, namespaced: bool = True, name_rule: NameRule = "subdomain"
) -> list[FieldCause]:
    """Every ``ObjectMeta`` rule ``metadata`` breaks; ``name_rule`` is the kind's (Namespace: label)."""
    causes: list[FieldCause] = []
    name, generate_name = metadata.get("name"), metadata.get("generateName")
    if not name and not generate_name:
        causes.append(
            FieldCause(
                "metadata.name",
                "Required value: name or generateName is required",
                CauseType.FIELD_VALUE_REQUIRED,
            )
        )
    for field, value, prefix in (("name", name, False), ("generateName", generate_name, True)):
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            causes.append(FieldCause(f"metadata.{field}", "Invalid value: must be a string"))
            continue
        causes += [
            _invalid(f"metadata.{field}", value, m) for m in _name_errors(value, name_rule, prefix=prefix)
        ]
    namespace = metadata.get("namespace")
    if namespaced and namespace:
        if not isinstance(namespace, str):
            causes.append(FieldCause("metadata.namespace", "Invalid value: must be a string"))
        else:
            causes += [_invalid("metadata.namespace", namespace, m) for m in dns1123_label_errors(namespace)]
    labels, label_type_causes = _string_map(metadata, "labels")
    annotations, annotation_type_causes = _string_map(metadata, "annotations")
    return (
        causes
        + label_type_causes
        + _label_causes(labels)
        + annotation_type_causes
        + _annotation_causes(annotations)
        + _owner_reference_causes(metadata.get("ownerReferences"))
    )
