"""Every Store backend holds a Namespace by its ``spec.finalizers``, as kube-apiserver's registry does."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.store.base import NotFoundError, Store

NAMESPACES = "namespaces"


def namespace(name: str, *, finalizers: list[str] | None = None, **metadata: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, **metadata}}
    if finalizers is not None:
        obj["spec"] = {"finalizers": finalizers}
    obj["status"] = {"phase": "Active"}
    return obj


async def test_deleting_a_namespace_with_spec_finalizers_marks_it_terminating(store: Store) -> None:
    await store.create(NAMESPACES, namespace("x", finalizers=["kubernetes"]))
    marked = await store.delete(NAMESPACES, "", "x")
    kept = await store.get(NAMESPACES, "", "x")
    assert kept == marked
    assert "deletionTimestamp" in kept["metadata"]
    assert kept["status"]["phase"] == "Terminating"


async def test_emptying_a_terminating_namespaces_spec_finalizers_removes_it(store: Store) -> None:
    await store.create(NAMESPACES, namespace("x", finalizers=["kubernetes"]))
    marked = await store.delete(NAMESPACES, "", "x")
    await store.update(NAMESPACES, {**marked, "spec": {"finalizers": []}})
    with pytest.raises(NotFoundError):
        await store.get(NAMESPACES, "", "x")


async def test_a_namespace_without_spec_finalizers_is_deleted_at_once(store: Store) -> None:
    await store.create(NAMESPACES, namespace("x"))
    await store.delete(NAMESPACES, "", "x")
    with pytest.raises(NotFoundError):
        await store.get(NAMESPACES, "", "x")


async def test_spec_finalizers_of_other_kinds_do_not_hold_them(store: Store) -> None:
    metadata = {"name": "a", "namespace": "d"}
    vm = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": metadata}
    await store.create("virtualmachines.kubevirt.io", {**vm, "spec": {"finalizers": ["kubernetes"]}})
    await store.delete("virtualmachines.kubevirt.io", "d", "a")
    with pytest.raises(NotFoundError):
        await store.get("virtualmachines.kubevirt.io", "d", "a")
