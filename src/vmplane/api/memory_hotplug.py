"""Whether a guest's memory can be hot-plugged: KubeVirt's ``ValidateLiveUpdateMemory``, in its order.

The messages are upstream's, word for word, because users and tools match on them.
"""

from __future__ import annotations

from vmplane.api.quantity import Quantity
from vmplane.api.vmi import VirtualMachineInstanceSpec

__all__ = ["MEMORY_HOTPLUG_ARCHITECTURES", "MIN_HOTPLUG_GUEST", "memory_hotplug_errors"]

MIN_HOTPLUG_GUEST = Quantity.parse("1Gi")
MEMORY_HOTPLUG_ARCHITECTURES = ("", "amd64")
_MI2 = 2 * 1024 * 1024
_GI = 1024 * 1024 * 1024


def memory_hotplug_errors(spec: VirtualMachineInstanceSpec, max_guest: Quantity | None) -> list[str]:
    """Every reason memory hotplug is impossible for ``spec`` up to ``max_guest`` (empty: possible)."""
    domain = spec.domain
    cpu = domain.cpu
    memory = domain.memory
    guest = memory.guest if memory is not None else None
    errors: list[str] = []
    if cpu is not None and cpu.realtime is not None:
        errors.append("Memory hotplug is not compatible with realtime VMs")
    if cpu is not None and cpu.numa is not None and cpu.numa.guest_mapping_passthrough is not None:
        errors.append("Memory hotplug is not compatible with guest mapping passthrough")
    if domain.launch_security is not None:
        errors.append("Memory hotplug is not compatible with encrypted VMs")
    if guest is None:
        errors.append("Guest memory must be configured when memory hotplug is enabled")
    if max_guest is None:
        errors.append("Max guest memory must be configured when memory hotplug is enabled")
    if guest is not None and max_guest is not None and guest > max_guest:
        errors.append("Guest memory is greater than the configured maxGuest memory")
    huge_1g = memory is not None and memory.hugepages is not None and memory.hugepages.page_size == "1Gi"
    alignment, unit = (_GI, "1Gi") if huge_1g else (_MI2, "2Mi")
    if guest is not None and guest.value % alignment != 0:
        errors.append(f"Guest memory must be {unit} aligned")
    if max_guest is not None and max_guest.value % alignment != 0:
        errors.append(f"MaxGuest must be {unit} aligned")
    if (spec.architecture or "") not in MEMORY_HOTPLUG_ARCHITECTURES:
        errors.append("Memory hotplug is only available for x86_64 VMs")
    if guest is not None and guest < MIN_HOTPLUG_GUEST:
        errors.append("Memory hotplug is only available for VMs with at least 1Gi of guest memory")
    return errors
