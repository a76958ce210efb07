"""Deletions the API refuses whoever asks: the objects a running control plane cannot lose.

An admin token may do everything else, but two deletions break vmplane for good rather than for one
user, so they are refused as upstream refuses them:

* the namespaces Kubernetes calls immortal (``default``, ``kube-system``, ``kube-public``), with the
  ``NamespaceLifecycle`` admission plugin's message: deleting ``default`` would orphan its VMs; and
  ``kubevirt``, which holds the cluster's one ``KubeVirt`` object (a vmplane rule: upstream's
  installation is an operator that would recreate it);
* the ``KubeVirt`` object while workloads exist, unless its ``spec.uninstallStrategy`` is
  ``RemoveWorkloads``, with the message of KubeVirt's ``KubeVirtDeletionAdmitter``. Upstream's
  operator defaults the strategy to ``BlockUninstallIfWorkloadsExist`` on the object; vmplane reads an
  absent strategy as that default, so an undefaulted object is protected too.

A deleted Node is not refused here: its agent registers it again (``agent/node.py``).

``deletion_refusal`` decides; ``check_deletion`` gathers what it needs from the store.
"""

from __future__ import annotations

from vmplane.apiserver import status as st
from vmplane.apiserver.registry import ResourceType
from vmplane.store.base import JsonObject, Store

__all__ = ["IMMORTAL_NAMESPACES", "check_deletion", "deletion_refusal"]

IMMORTAL_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kubevirt"})
_UNINSTALL_MESSAGE = (
    "Rejecting the uninstall request, since there are still {} present. Either delete all KubeVirt "
    "related workloads or change the uninstall strategy before uninstalling KubeVirt."
)
_VMIS = "virtualmachineinstances.kubevirt.io"
_VMS = "virtualmachines.kubevirt.io"
#: The workloads that block an uninstall, in upstream's order and with upstream's names.
_WORKLOADS = ((_VMIS, "Virtual Machine Instances"), (_VMS, "Virtual Machines"))


def deletion_refusal(
    resource_type: ResourceType, current: JsonObject, *, workloads_present: tuple[str, ...] = ()
) -> st.ApiError | None:
    """Why deleting ``current`` is refused, or None.

    ``workloads_present``: the store resources (``_WORKLOADS``) that hold at least one object.
    """
    name = current.get("metadata", {}).get("name", "")
    if resource_type.group == "" and resource_type.plural == "namespaces" and name in IMMORTAL_NAMESPACES:
        return st.ApiError(
            code=403,
            reason="Forbidden",
            message=f'namespaces "{name}" is forbidden: this namespace may not be deleted',
            details={"name": name, "kind": "namespaces"},
        )
    if resource_type.store_resource == "kubevirts.kubevirt.io":
        strategy = (current.get("spec") or {}).get("uninstallStrategy") or "BlockUninstallIfWorkloadsExist"
        if strategy == "RemoveWorkloads":
            return None
        for resource, shown in _WORKLOADS:
            if resource in workloads_present:
                return st.ApiError(code=400, reason="BadRequest", message=_UNINSTALL_MESSAGE.format(shown))
    return None


async def check_deletion(store: Store, resource_type: ResourceType, current: JsonObject) -> None:
    """Raise the refusal ``deletion_refusal`` decides for ``current``, reading workloads only if needed."""
    present: tuple[str, ...] = ()
    if resource_type.store_resource == "kubevirts.kubevirt.io":
        present = tuple([resource for resource, _ in _WORKLOADS if (await store.list(resource)).items])
    refusal = deletion_refusal(resource_type, current, workloads_present=present)
    if refusal is not None:
        raise refusal
