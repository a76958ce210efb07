"""Choosing between KVM and TCG.

``probe_accel`` answers "kvm" only when ``/dev/kvm`` opens read-write, speaks API version 12, creates a
VM, *and* the CPU we run on advertises hardware virtualization (``vmx`` or ``svm``). The last check is
the one that matters on vmplane's test machines: there ``/dev/kvm`` is provided in software inside a
VM whose CPU shows neither flag, QEMU starts and QMP works, but a stock Linux kernel hangs right
after "Probing EDD" (or dies with a KVM emulation failure). Real hardware and ordinary nested
virtualization (which passes ``vmx``/``svm`` through) keep KVM. Tests pin TCG regardless.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["AccelProbe", "probe_accel"]

_KVM_GET_API_VERSION = 0xAE00
_KVM_CREATE_VM = 0xAE01
_KVM_API_VERSION = 12


@dataclass(frozen=True, slots=True)
class AccelProbe:
    accel: Literal["kvm", "tcg"]
    reason: str


def _cpu_flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def probe_accel(*, kvm_device: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo")) -> AccelProbe:
    """Whether guests on this host should run under KVM, and why."""
    try:
        fd = os.open(kvm_device, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return AccelProbe("tcg", f"cannot open {kvm_device}: {err.strerror}")
    try:
        version = fcntl.ioctl(fd, _KVM_GET_API_VERSION, 0)
        if version != _KVM_API_VERSION:
            return AccelProbe("tcg", f"{kvm_device} speaks KVM API {version}, not {_KVM_API_VERSION}")
        os.close(fcntl.ioctl(fd, _KVM_CREATE_VM, 0))
    except OSError as err:
        return AccelProbe("tcg", f"{kvm_device} cannot create a VM: {err.strerror}")
    finally:
        os.close(fd)
    if not _cpu_flags(cpuinfo) & {"vmx", "svm"}:
        return AccelProbe(
            "tcg",
            f"{kvm_device} works but the CPU advertises neither vmx nor svm: KVM is emulated in "
            "software here and Linux guests hang under it",
        )
    return AccelProbe("kvm", f"{kvm_device} works and the CPU has hardware virtualization")
