"""The QEMU driver: runs machines as QEMU processes and hotplugs them in place over QMP."""

from vmplane.hypervisor.qemu.accel import AccelProbe, probe_accel
from vmplane.hypervisor.qemu.argv import build_argv
from vmplane.hypervisor.qemu.driver import QemuHypervisor

__all__ = ["AccelProbe", "QemuHypervisor", "build_argv", "probe_accel"]
