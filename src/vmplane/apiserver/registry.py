"""The resource registry: every kind the API serves, described as data.

Discovery, OpenAPI, routing, tables and admission all read a :class:`ResourceType`; nothing in the
server knows a kind by name. Typed kinds plug in by registering a ``ResourceType`` whose
``admitter`` decodes, defaults and validates (raising :class:`vmplane.api.errors.InvalidObjectError`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from vmplane.store.base import JsonObject

__all__ = [
    "Admitted",
    "Admitter",
    "FieldValidation",
    "Operation",
    "PassThroughAdmitter",
    "Registry",
    "ResourceType",
    "TableColumn",
    "permissive_schema",
]

Operation = Literal["CREATE", "UPDATE"]
FieldValidation = Literal["Strict", "Warn", "Ignore"]
CellFunction = Callable[[JsonObject, datetime], Any]


@dataclass(frozen=True, slots=True)
class Admitted:
    """What admission made of an object: the object to store and warnings for the client."""

    object: JsonObject
    warnings: list[str] = field(default_factory=list)


class Admitter(Protocol):
    """Decodes, defaults and validates one kind's objects before they are stored.

    ``new`` is the object as the client sent it (after patching, for a patch), ``old`` the stored
    one on UPDATE. Unknown fields are the admitter's business: with ``Strict`` it raises
    ``InvalidObjectError`` with ``FieldValueUnknown`` causes, with ``Warn`` it drops them and returns
    ``unknown field "spec.foo"`` warnings, with ``Ignore`` it drops them silently. ``dry_run`` is
    informational: the server never stores a dry-run result whatever the admitter returns.
    The admitter must not mutate its arguments.
    """

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidation,
        dry_run: bool,
    ) -> Admitted: ...


class PassThroughAdmitter:
    """The admitter of kinds without typed models: accepts every object as it is."""

    def admit(
        self,
        *,
        operation: Operation,
        new: JsonObject,
        old: JsonObject | None,
        field_validation: FieldValidation,
        dry_run: bool,
    ) -> Admitted:
        return Admitted(object=new)


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of ``kubectl get`` output (a ``TableColumnDefinition``) and how to fill its cell.

    ``cell`` gets the object and the server's "now" (for ages) and returns a JSON value.
    """

    name: str
    cell: CellFunction
    type: str = "string"
    format: str = ""
    description: str = ""
    priority: int = 0


def permissive_schema(kind: str) -> JsonObject:
    """A JSON schema accepting any spec and status, for kinds whose typed model is not registered yet."""
    return {
        "type": "object",
        "description": f"{kind} (schema not yet typed: any fields accepted)",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this representation."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object", "description": "Standard object metadata."},
            "spec": {
                "type": "object",
                "description": "Desired state.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
            "status": {
                "type": "object",
                "description": "Observed state.",
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
        "x-kubernetes-preserve-unknown-fields": True,
    }


@dataclass(frozen=True, slots=True)
class ResourceType:
    """Everything the API needs to serve one kind.

    ``columns`` is the table spec and row function at once: each column computes its own cell.
    ``field_selectors`` lists the fields beyond ``metadata.name``/``metadata.namespace`` that list
    and watch may filter on (dotted paths into the object). ``allow_unconditional_update`` is False
    for custom resources, as in Kubernetes: a PUT must carry ``metadata.resourceVersion``.
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status_subresource: bool = True
    schema: JsonObject = field(default_factory=dict)
    columns: tuple[TableColumn, ...] = ()
    admitter: Admitter = field(default_factory=PassThroughAdmitter)
    field_selectors: tuple[str, ...] = ()
    allow_unconditional_update: bool = False
    description: str = ""
    # Namespace names are DNS-1123 labels; every other kind's are DNS-1123 subdomains.
    name_rule: Literal["subdomain", "label"] = "subdomain"
    #: Served for reading only (get, list, watch; writes are 405): kinds clients ask about that
    #: vmplane never has, such as Pods, listed honestly empty.
    read_only: bool = False
    #: A create by the control plane's controllers keeps the status it carries (anyone else's is
    #: dropped, as for every kind with a status subresource): for kinds whose upstream has no status
    #: subresource, so their controllers create an object and its first status in one write.
    status_on_create: bool = False

    @property
    def api_version(self) -> str:
        """``kubevirt.io/v1``, or ``v1`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def store_resource(self) -> str:
        """The Store's resource key, which is also the qualified name in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``VirtualMachine.kubevirt.io`` as in ``... is invalid`` messages."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def verbs(self) -> tuple[str, ...]:
        if self.read_only:
            return ("get", "list", "watch")
        return ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


class Registry:
    """The kinds the server serves, looked up by group/version/plural; iteration keeps order."""

    def __init__(self, resource_types: Iterable[ResourceType] = ()) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        for resource_type in resource_types:
            self.register(resource_type)

    def register(self, resource_type: ResourceType) -> None:
        """Add or replace a kind (a typed registration replaces a permissive one)."""
        key = (resource_type.group, resource_type.version, resource_type.plural)
        self._by_path[key] = resource_type

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> ResourceType | None:
        return next((r for r in self if r.group == group and r.kind == kind), None)

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._by_path.values())

    def groups(self) -> list[str]:
        """Non-core groups in registration order."""
        seen: dict[str, None] = {}
        for resource_type in self:
            if resource_type.group:
                seen.setdefault(resource_type.group)
        return list(seen)

    def versions(self, group: str) -> list[str]:
        seen: dict[str, None] = {}
        for resource_type in self:
            if resource_type.group == group:
                seen.setdefault(resource_type.version)
        return list(seen)

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [r for r in self if r.group == group and r.version == version]
