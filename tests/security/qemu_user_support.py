"""Shared by the QEMU confinement tests: the QEMU system user, made by the install script if absent.

The tests must not depend on suite order or skip when run alone, so the user is created here with the
same script ``scripts/ci-install-qemu.sh`` calls (``scripts/create-qemu-user.sh``, idempotent).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from vmplane.hypervisor.guestfs import GuestUser, guest_user

__all__ = ["REPO", "qemu_user"]

REPO = Path(__file__).resolve().parents[2]


def qemu_user() -> GuestUser:
    """Who QEMU runs as for this test process, creating ``vmplane-qemu`` first when root."""
    if os.geteuid() == 0:
        subprocess.run([str(REPO / "scripts" / "create-qemu-user.sh")], check=True, timeout=60)
    return guest_user(euid=os.geteuid())
