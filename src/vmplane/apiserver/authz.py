"""Who may do what: ``authorize(user, attributes) -> Decision``, a pure function over data.

The roles are a declared table of rules, as RBAC ClusterRoles are, so a test and a reader see the
same thing. Node identities (``system:node:NAME``, group ``system:nodes``) are narrowed further, as
Kubernetes' Node authorizer and NodeRestriction admission narrow a kubelet: a node may write only its
own Node and Lease and the VMIs bound to it (``status.nodeName``), which the caller looks up and
passes in ``attributes.node_binding``.

Deletions refused whoever asks (``default``, the KubeVirt object with workloads) are admission's, not
authorization's, as in Kubernetes: ``apiserver/deletion_guards.py``; ``kubectl auth can-i delete ns
default`` says yes to an admin there too.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ADMIN",
    "ALL_VERBS",
    "CONTROLLERS",
    "NODES_GROUP",
    "READ_VERBS",
    "RESTART_ANY_VM",
    "VIEWER",
    "WINDOW_NEEDS_RESTART",
    "Attributes",
    "Decision",
    "Role",
    "User",
    "authorize",
    "forbidden_message",
    "node_user",
    "user_for",
]

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
ALL_VERBS = READ_VERBS | WRITE_VERBS
AUTHENTICATED = "system:authenticated"
NODES_GROUP = "system:nodes"
NODE_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

ADMIN = "admin"
VIEWER = "viewer"
CONTROLLERS = "system:vmplane:controllers"


class Role(str, enum.Enum):
    """What a token was created for (``vmplane token create --role``)."""

    ADMIN = "admin"
    VIEWER = "viewer"
    NODE = "node"
    CONTROLLERS = "controllers"


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated identity, as ``user.Info`` in Kubernetes."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


def node_user(node: str) -> User:
    return User(name=NODE_PREFIX + node, groups=(NODES_GROUP, AUTHENTICATED))


def user_for(role: Role, *, node: str | None = None, uid: str = "") -> User:
    """The identity a token of ``role`` authenticates as."""
    if role is Role.NODE:
        if not node:
            raise ValueError("a node token needs a node name")
        return User(name=NODE_PREFIX + node, groups=(NODES_GROUP, AUTHENTICATED), uid=uid)
    names = {
        Role.ADMIN: (ADMIN, ("system:masters", AUTHENTICATED)),
        Role.VIEWER: (VIEWER, ("vmplane:viewers", AUTHENTICATED)),
        Role.CONTROLLERS: (CONTROLLERS, (CONTROLLERS, AUTHENTICATED)),
    }
    name, groups = names[role]
    return User(name=name, groups=groups, uid=uid)


@dataclass(frozen=True, slots=True)
class Attributes:
    """One request as an authorizer sees it (Kubernetes' ``authorizer.Attributes``).

    ``resource`` is empty for a non-resource request (``path`` is then what is asked for).
    ``node_binding`` is the node a VMI is bound to (its ``status.nodeName``), looked up by the caller
    for node identities; ``None`` when unknown or unbound. ``migration_target`` is the node a VMI is
    migrating to (``status.migrationState.targetNode`` of a migration not yet ended), looked up the
    same way. ``node_written`` is the ``status.nodeName`` the request body would set (``""`` to clear
    it), None when the body leaves it alone.
    """

    verb: str
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    node_binding: str | None = None
    migration_target: str | None = None
    node_written: str | None = None

    @property
    def is_resource_request(self) -> bool:
        return bool(self.resource)


@dataclass(frozen=True, slots=True)
class Decision:
    """``reason`` says why, when a denial has a reason worth telling. ``admission`` marks a denial
    Kubernetes makes in admission (NodeRestriction), reported with the reason alone, not the user."""

    allowed: bool
    reason: str = ""
    admission: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """An RBAC ``PolicyRule``: ``*`` matches anything; resources may name a subresource (``vms/start``)."""

    verbs: frozenset[str]
    groups: frozenset[str] = frozenset({"*"})
    resources: frozenset[str] = frozenset({"*"})

    def matches(self, attrs: Attributes) -> bool:
        return (
            _hit(self.verbs, attrs.verb)
            and _hit(self.groups, attrs.api_group)
            and _resource_hit(self.resources, attrs.resource, attrs.subresource)
        )


def _resource_hit(allowed: frozenset[str], resource: str, subresource: str) -> bool:
    """RBAC's matching: ``*`` is every resource but no subresource; ``*/status``, ``vms/*``, ``*/*``."""
    if not subresource:
        return "*" in allowed or resource in allowed
    candidates = (f"{resource}/{subresource}", f"*/{subresource}", f"{resource}/*", "*/*")
    return any(c in allowed for c in candidates)


def _hit(allowed: frozenset[str], value: str) -> bool:
    return "*" in allowed or value in allowed


def _rule(verbs: frozenset[str] | set[str], groups: set[str], resources: set[str]) -> Rule:
    return Rule(verbs=frozenset(verbs), groups=frozenset(groups), resources=frozenset(resources))


_KV = "kubevirt.io"
_VMPLANE = "vmplane.io"
#: Objects and their status in the groups vmplane serves; not ``subresources.kubevirt.io``: reading a
#: guest's serial console is more than viewing (KubeVirt's view role lacks it too).
_READ_OBJECTS = _rule(
    READ_VERBS,
    {"", "apps", _KV, "coordination.k8s.io", _VMPLANE, "instancetype.kubevirt.io"},
    {"*", "*/status"},
)

#: Group (or user name) -> its rules, as RBAC ClusterRoles bound to groups.
ROLE_RULES: Mapping[str, tuple[Rule, ...]] = {
    "system:masters": (_rule({"*"}, {"*"}, {"*", "*/*"}),),
    "vmplane:viewers": (_READ_OBJECTS,),
    CONTROLLERS: (
        _READ_OBJECTS,
        _rule(
            ALL_VERBS,
            {_KV},
            {
                "virtualmachines",
                "virtualmachines/status",
                "virtualmachineinstances",
                "virtualmachineinstances/status",
                "virtualmachineinstancemigrations",
                "virtualmachineinstancemigrations/status",
            },
        ),
        _rule({"get", "update", "patch"}, {_KV}, {"kubevirts/status"}),
        _rule({"get", "update", "patch"}, {_VMPLANE}, {"maintenancewindows/status"}),
        _rule(ALL_VERBS, {"apps"}, {"controllerrevisions"}),
        _rule({"create", "update", "patch"}, {""}, {"events"}),
        # The namespace controller empties a terminating namespace of every kind and finalizes it; the
        # garbage collector removes owner references from, and deletes, dependents of any kind.
        _rule(WRITE_VERBS - {"create"}, {"", "coordination.k8s.io"}, {"events", "pods", "leases"}),
        _rule({"update"}, {""}, {"namespaces/finalize", "namespaces/status"}),
        # Leader election, and the node lifecycle controller's taints and conditions.
        _rule({"create", "update", "patch"}, {"coordination.k8s.io"}, {"leases"}),
        # The unreachable taints are in the Node's spec, its conditions in its status (as
        # kube-controller-manager's node-controller role).
        _rule({"update", "patch"}, {""}, {"nodes", "nodes/status"}),
    ),
    NODES_GROUP: (
        _rule(READ_VERBS, {""}, {"nodes", "namespaces", "events", "pods"}),
        _rule(
            READ_VERBS,
            {_KV},
            {"virtualmachineinstances", "kubevirts", "virtualmachines", "virtualmachineinstancemigrations"},
        ),
        _rule(READ_VERBS, {"coordination.k8s.io"}, {"leases"}),
        _rule({"create", "update", "patch"}, {""}, {"events"}),
        # Narrowed to the node's own objects by _node_restriction.
        _rule({"create", "update", "patch"}, {""}, {"nodes", "nodes/status"}),
        _rule({"update", "patch"}, {_KV}, {"virtualmachineinstances", "virtualmachineinstances/status"}),
        _rule({"create", "update", "patch", "delete"}, {"coordination.k8s.io"}, {"leases"}),
    ),
    #: Every authenticated identity: discovery, and asking about itself.
    AUTHENTICATED: (
        _rule({"create"}, {"authorization.k8s.io"}, {"selfsubjectaccessreviews", "selfsubjectrulesreviews"}),
        _rule({"create"}, {"authentication.k8s.io"}, {"selfsubjectreviews"}),
    ),
}


def forbidden_message(user: User, attrs: Attributes, decision: Decision) -> str:
    """Kubernetes' ``Status.message`` for a denied request (``responsewriters.Forbidden``)."""
    reason = decision.reason
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    if decision.admission:
        return f'{qualified} "{attrs.name}" is forbidden: {reason}'
    if not attrs.is_resource_request:
        text = f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
        prefix = "forbidden"
    else:
        resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
        where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
        text = (
            f'User "{user.name}" cannot {attrs.verb} resource "{resource}" '
            f'in API group "{attrs.api_group}" {where}'
        )
        prefix = f'{qualified} "{attrs.name}" is forbidden' if attrs.name else f"{qualified} is forbidden"
    if reason:
        text = f"{text}: {reason}"
    return f"{prefix}: {text}"


def authorize(user: User, attrs: Attributes) -> Decision:
    """Allow or deny one request; the reason says why when a denial has one worth telling.

    The order is Kubernetes': the role's rules, then the node restriction.
    """
    if not attrs.is_resource_request:
        # Discovery, OpenAPI, health and version are open to every authenticated identity (as the
        # system:discovery and system:public-info-viewer roles make them in Kubernetes).
        return Decision(attrs.verb == "get")
    rules = [rule for group in (*user.groups, user.name) for rule in ROLE_RULES.get(group, ())]
    if not any(rule.matches(attrs) for rule in rules):
        return Decision(False)
    if NODES_GROUP in user.groups:
        restricted = _node_restriction(user, attrs)
        if not restricted.allowed:
            return restricted
    if _writes_window(attrs) and not authorize(user, RESTART_ANY_VM).allowed:
        return Decision(False, WINDOW_NEEDS_RESTART, admission=True)
    return Decision(True)


#: Restarting VMs in every namespace, which writing a MaintenanceWindow implies.
RESTART_ANY_VM = Attributes(
    verb="update", api_group="subresources.kubevirt.io", resource="virtualmachines", subresource="restart"
)
WINDOW_NEEDS_RESTART = (
    "a MaintenanceWindow restarts the VMs it selects, in any namespace its namespaceSelector matches now "
    'or later: only identities that may update "virtualmachines/restart" in API group '
    '"subresources.kubevirt.io" at the cluster scope may write one'
)


def _writes_window(attrs: Attributes) -> bool:
    """A write of a MaintenanceWindow's spec (its status is its controller's)."""
    return (
        attrs.api_group == _VMPLANE
        and attrs.resource == "maintenancewindows"
        and not attrs.subresource
        and attrs.verb in ("create", "update", "patch")
    )


#: Kinds a node may write only for itself (their rules above grant the verbs).
_NODE_BOUND = frozenset({"nodes", "leases", "virtualmachineinstances"})


def _node_restriction(user: User, attrs: Attributes) -> Decision:
    """A node writes only its own Node and Lease and the VMIs bound to it."""
    if attrs.verb in READ_VERBS or attrs.resource not in _NODE_BOUND:
        return Decision(True)
    node = user.name.removeprefix(NODE_PREFIX) if user.name.startswith(NODE_PREFIX) else ""
    if not node:
        return Decision(False, "unknown node identity")
    if attrs.resource == "nodes":
        if attrs.name == node:
            return Decision(True)
        return Decision(False, f"node '{node}' cannot modify node '{attrs.name}'")
    if attrs.resource == "leases":
        if attrs.namespace == NODE_LEASE_NAMESPACE and attrs.name == node:
            return Decision(True)
        return Decision(False, f"node '{node}' cannot modify lease '{attrs.namespace}/{attrs.name}'")
    if attrs.resource == "virtualmachineinstances":
        # A migration's target writes the VMI too: where it listens, then the hand-over to itself.
        if not attrs.name or node not in (attrs.node_binding, attrs.migration_target):
            return Decision(False, f"no relationship found between node '{node}' and this object")
        if attrs.node_written is not None and attrs.node_written not in (node, attrs.node_binding):
            # NodeRestriction: a node keeps what is bound to it (or takes over what migrates to it);
            # it does not hand objects on to another node.
            return Decision(
                False, f"node '{node}' cannot change the node this object is bound to", admission=True
            )
        return Decision(True)
    return Decision(False)
