"""Failed hotplugs in a VMI status: the one encoder and the one decoder.

The node agent is the only writer (``agent.status.machine_status`` encodes what its operations met);
the agent (which paths not to retry) and the planner (``rollout.observed``: which paths to plan from
what the guest really has) both read it back through ``failed_hotplugs``. The record is the typed
``status.hotplugFailures`` list, one entry per VMI spec path, so two interfaces failing at once are
two entries; the upstream conditions beside it are for people and KubeVirt tooling, never read back.
"""

from __future__ import annotations

from collections.abc import Mapping

from vmplane.api.vmi import HotplugFailure, VirtualMachineInstanceStatus

__all__ = ["encode_failures", "failed_hotplugs"]


def failed_hotplugs(status: VirtualMachineInstanceStatus | None) -> dict[str, str]:
    """The failed VMI spec paths and the hypervisor's message for each."""
    if status is None:
        return {}
    return {failure.path: failure.message for failure in status.hotplug_failures or ()}


def encode_failures(failures: Mapping[str, str]) -> list[HotplugFailure] | None:
    """The ``hotplugFailures`` to write for ``failures`` (path -> message), sorted by path."""
    return [HotplugFailure(path=path, message=failures[path]) for path in sorted(failures)] or None
