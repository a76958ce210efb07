"""The Kubernetes protobuf messages vmplane reads and writes, as data (field numbers from upstream).

Numbers and names are those of ``k8s.io/api`` and ``k8s.io/apimachinery`` ``generated.proto``
(kubernetes/api 10b39a3, kubernetes/apimachinery eed236c); only the fields vmplane serves are
declared, and the parser skips the others. Four messages have a JSON form of their own and are
converted by :mod:`vmplane.apiserver.protobuf`: ``Time`` and ``MicroTime`` (RFC 3339 strings),
``Quantity`` (its string), and ``RawExtension`` and ``FieldsV1`` (the JSON object their ``raw`` holds).
Each served kind also has its list message (``metadata`` 1, ``items`` 2), for answers to lists.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import descriptor_pb2

__all__ = ["KINDS", "MESSAGES", "SPECIAL", "Field"]

_T = descriptor_pb2.FieldDescriptorProto
STRING, BYTES, BOOL, INT32, INT64 = _T.TYPE_STRING, _T.TYPE_BYTES, _T.TYPE_BOOL, _T.TYPE_INT32, _T.TYPE_INT64


@dataclass(frozen=True, slots=True)
class Field:
    """One field: its JSON name, number, and a scalar type or the name of a message in ``MESSAGES``.

    ``map_of`` makes it a ``map<string, map_of>`` (labels, capacity); ``repeated`` a list.
    """

    name: str
    number: int
    type: int | str = STRING
    repeated: bool = False
    map_of: int | str | None = None


_META = "ObjectMeta"
_TIME = "Time"

#: Messages whose JSON form is not an object: converted by hand, declared here for the wire.
SPECIAL = frozenset({"Time", "MicroTime", "Quantity", "RawExtension", "FieldsV1"})

#: Message name -> fields. Names are local to vmplane's proto package.
MESSAGES: dict[str, tuple[Field, ...]] = {
    # k8s.io/apimachinery/pkg/runtime
    "TypeMeta": (Field("apiVersion", 1), Field("kind", 2)),
    "Unknown": (
        Field("typeMeta", 1, "TypeMeta"),
        Field("raw", 2, BYTES),
        Field("contentEncoding", 3),
        Field("contentType", 4),
    ),
    "RawExtension": (Field("raw", 1, BYTES),),
    # k8s.io/apimachinery/pkg/api/resource
    "Quantity": (Field("string", 1),),
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "Time": (Field("seconds", 1, INT64), Field("nanos", 2, INT32)),
    "MicroTime": (Field("seconds", 1, INT64), Field("nanos", 2, INT32)),
    "OwnerReference": (
        Field("kind", 1),
        Field("name", 3),
        Field("uid", 4),
        Field("apiVersion", 5),
        Field("controller", 6, BOOL),
        Field("blockOwnerDeletion", 7, BOOL),
    ),
    _META: (
        Field("name", 1),
        Field("generateName", 2),
        Field("namespace", 3),
        Field("uid", 5),
        Field("resourceVersion", 6),
        Field("generation", 7, INT64),
        Field("creationTimestamp", 8, _TIME),
        Field("deletionTimestamp", 9, _TIME),
        Field("deletionGracePeriodSeconds", 10, INT64),
        Field("labels", 11, map_of=STRING),
        Field("annotations", 12, map_of=STRING),
        Field("ownerReferences", 13, "OwnerReference", repeated=True),
        Field("finalizers", 14, repeated=True),
        Field("managedFields", 17, "ManagedFieldsEntry", repeated=True),
    ),
    "FieldsV1": (Field("raw", 1, BYTES),),
    "ManagedFieldsEntry": (
        Field("manager", 1),
        Field("operation", 2),
        Field("apiVersion", 3),
        Field("time", 4, _TIME),
        Field("fieldsType", 6),
        Field("fieldsV1", 7, "FieldsV1"),
        Field("subresource", 8),
    ),
    "ListMeta": (
        Field("resourceVersion", 2),
        Field("continue", 3),
        Field("remainingItemCount", 4, INT64),
    ),
    "Preconditions": (Field("uid", 1), Field("resourceVersion", 2)),
    "DeleteOptions": (
        Field("gracePeriodSeconds", 1, INT64),
        Field("preconditions", 2, "Preconditions"),
        Field("orphanDependents", 3, BOOL),
        Field("propagationPolicy", 4),
        Field("dryRun", 5, repeated=True),
    ),
    # k8s.io/api/core/v1: Namespace
    "NamespaceSpec": (Field("finalizers", 1, repeated=True),),
    "NamespaceCondition": (
        Field("type", 1),
        Field("status", 2),
        Field("lastTransitionTime", 4, _TIME),
        Field("reason", 5),
        Field("message", 6),
    ),
    "NamespaceStatus": (Field("phase", 1), Field("conditions", 2, "NamespaceCondition", repeated=True)),
    "Namespace": (
        Field("metadata", 1, _META),
        Field("spec", 2, "NamespaceSpec"),
        Field("status", 3, "NamespaceStatus"),
    ),
    # k8s.io/api/core/v1: Node
    "Taint": (Field("key", 1), Field("value", 2), Field("effect", 3), Field("timeAdded", 4, _TIME)),
    "NodeSpec": (
        Field("podCIDR", 1),
        Field("providerID", 3),
        Field("unschedulable", 4, BOOL),
        Field("taints", 5, "Taint", repeated=True),
        Field("podCIDRs", 7, repeated=True),
    ),
    "NodeCondition": (
        Field("type", 1),
        Field("status", 2),
        Field("lastHeartbeatTime", 3, _TIME),
        Field("lastTransitionTime", 4, _TIME),
        Field("reason", 5),
        Field("message", 6),
    ),
    "NodeAddress": (Field("type", 1), Field("address", 2)),
    "DaemonEndpoint": (Field("Port", 1, INT32),),
    "NodeDaemonEndpoints": (Field("kubeletEndpoint", 1, "DaemonEndpoint"),),
    "NodeSystemInfo": (
        Field("machineID", 1),
        Field("systemUUID", 2),
        Field("bootID", 3),
        Field("kernelVersion", 4),
        Field("osImage", 5),
        Field("containerRuntimeVersion", 6),
        Field("kubeletVersion", 7),
        Field("kubeProxyVersion", 8),
        Field("operatingSystem", 9),
        Field("architecture", 10),
    ),
    "NodeStatus": (
        Field("capacity", 1, map_of="Quantity"),
        Field("allocatable", 2, map_of="Quantity"),
        Field("phase", 3),
        Field("conditions", 4, "NodeCondition", repeated=True),
        Field("addresses", 5, "NodeAddress", repeated=True),
        Field("daemonEndpoints", 6, "NodeDaemonEndpoints"),
        Field("nodeInfo", 7, "NodeSystemInfo"),
    ),
    "Node": (Field("metadata", 1, _META), Field("spec", 2, "NodeSpec"), Field("status", 3, "NodeStatus")),
    # k8s.io/api/core/v1: Event
    "ObjectReference": (
        Field("kind", 1),
        Field("namespace", 2),
        Field("name", 3),
        Field("uid", 4),
        Field("apiVersion", 5),
        Field("resourceVersion", 6),
        Field("fieldPath", 7),
    ),
    "EventSource": (Field("component", 1), Field("host", 2)),
    "EventSeries": (Field("count", 1, INT32), Field("lastObservedTime", 2, "MicroTime")),
    "Event": (
        Field("metadata", 1, _META),
        Field("involvedObject", 2, "ObjectReference"),
        Field("reason", 3),
        Field("message", 4),
        Field("source", 5, "EventSource"),
        Field("firstTimestamp", 6, _TIME),
        Field("lastTimestamp", 7, _TIME),
        Field("count", 8, INT32),
        Field("type", 9),
        Field("eventTime", 10, "MicroTime"),
        Field("series", 11, "EventSeries"),
        Field("action", 12),
        Field("related", 13, "ObjectReference"),
        Field("reportingComponent", 14),
        Field("reportingInstance", 15),
    ),
    # k8s.io/api/apps/v1
    "ControllerRevision": (
        Field("metadata", 1, _META),
        Field("data", 2, "RawExtension"),
        Field("revision", 3, INT64),
    ),
    # k8s.io/api/coordination/v1
    "LeaseSpec": (
        Field("holderIdentity", 1),
        Field("leaseDurationSeconds", 2, INT32),
        Field("acquireTime", 3, "MicroTime"),
        Field("renewTime", 4, "MicroTime"),
        Field("leaseTransitions", 5, INT32),
    ),
    "Lease": (Field("metadata", 1, _META), Field("spec", 2, "LeaseSpec")),
    # k8s.io/api/authorization/v1
    "ResourceAttributes": (
        Field("namespace", 1),
        Field("verb", 2),
        Field("group", 3),
        Field("version", 4),
        Field("resource", 5),
        Field("subresource", 6),
        Field("name", 7),
    ),
    "NonResourceAttributes": (Field("path", 1), Field("verb", 2)),
    "SelfSubjectAccessReviewSpec": (
        Field("resourceAttributes", 1, "ResourceAttributes"),
        Field("nonResourceAttributes", 2, "NonResourceAttributes"),
    ),
    "SubjectAccessReviewStatus": (
        Field("allowed", 1, BOOL),
        Field("reason", 2),
        Field("evaluationError", 3),
        Field("denied", 4, BOOL),
    ),
    "SelfSubjectAccessReview": (
        Field("metadata", 1, _META),
        Field("spec", 2, "SelfSubjectAccessReviewSpec"),
        Field("status", 3, "SubjectAccessReviewStatus"),
    ),
    # k8s.io/api/authentication/v1
    "UserInfo": (Field("username", 1), Field("uid", 2), Field("groups", 3, repeated=True)),
    "SelfSubjectReviewStatus": (Field("userInfo", 1, "UserInfo"),),
    "SelfSubjectReview": (Field("metadata", 1, _META), Field("status", 2, "SelfSubjectReviewStatus")),
}
_LISTED = {
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "Event"),
    ("apps/v1", "ControllerRevision"),
    ("coordination.k8s.io/v1", "Lease"),
}
MESSAGES.update(
    {
        f"{kind}List": (Field("metadata", 1, "ListMeta"), Field("items", 2, kind, repeated=True))
        for _, kind in _LISTED
    }
)

#: (apiVersion, kind) -> message in ``MESSAGES``: the objects a protobuf body may carry.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "Node"): "Node",
    ("v1", "Event"): "Event",
    ("v1", "DeleteOptions"): "DeleteOptions",
    ("meta.k8s.io/v1", "DeleteOptions"): "DeleteOptions",
    ("apps/v1", "ControllerRevision"): "ControllerRevision",
    ("coordination.k8s.io/v1", "Lease"): "Lease",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("authentication.k8s.io/v1", "SelfSubjectReview"): "SelfSubjectReview",
    ("authentication.k8s.io/v1beta1", "SelfSubjectReview"): "SelfSubjectReview",
    **{(api_version, f"{kind}List"): f"{kind}List" for api_version, kind in _LISTED},
}
