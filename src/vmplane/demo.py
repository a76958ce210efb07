"""``vmplane serve --demo``: install the test guest as an image and create the VM ``default/demo``.

The demo VM boots the repository's test guest (``guest/out``, built by ``guest/build.py``) by kernel
boot, with 1 socket (room for 4) and 1Gi of memory (room for 4Gi), so that a rollout can be tried at
once: patch its sockets under ``LiveUpdate`` and watch the guest's console report the new vCPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from vmplane.api.resources import VIRTUAL_MACHINES
from vmplane.client.base import ObjectClient
from vmplane.host.paths import HostPaths
from vmplane.store.base import AlreadyExistsError

__all__ = ["DEMO_IMAGE", "demo_vm", "install_demo"]

log = logging.getLogger(__name__)

DEMO_IMAGE = "vmplane/test-guest:latest"
GUEST_FILES = ("vmlinuz", "initrd.img")


def demo_vm(cmdline: str) -> dict[str, Any]:
    """The demo VM: the test guest by kernel boot, one hotpluggable-headroom CPU socket, 1Gi."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "demo", "namespace": "default", "labels": {"app": "demo"}},
        "spec": {
            "runStrategy": "Always",
            "template": {
                "spec": {
                    "domain": {
                        "cpu": {"sockets": 1, "cores": 1, "threads": 1},
                        "memory": {"guest": "1Gi"},
                        "firmware": {
                            "kernelBoot": {
                                "kernelArgs": cmdline,
                                "container": {
                                    "image": DEMO_IMAGE,
                                    "kernelPath": "/vmlinuz",
                                    "initrdPath": "/initrd.img",
                                },
                            }
                        },
                        "devices": {"interfaces": [{"name": "default", "masquerade": {}}]},
                    },
                    "networks": [{"name": "default", "pod": {}}],
                    "terminationGracePeriodSeconds": 5,
                }
            },
        },
    }


async def install_demo(client: ObjectClient, *, paths: HostPaths, guest_dir: Path) -> None:
    """Copy the test guest into ``paths``' image directory and create ``default/demo`` unless it exists.

    Images need only be readable by QEMU's user: the copies are 0644 in 0755 directories.
    """
    missing = [name for name in (*GUEST_FILES, "cmdline") if not (guest_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the demo needs the test guest in {guest_dir} (missing {', '.join(missing)}): "
            "run `python guest/build.py --out guest/out`"
        )
    image = paths.image(DEMO_IMAGE)
    image.mkdir(parents=True, exist_ok=True)
    os.chmod(image, 0o755)
    for name in GUEST_FILES:
        shutil.copyfile(guest_dir / name, image / name)
        os.chmod(image / name, 0o644)
    cmdline = (guest_dir / "cmdline").read_text().strip()
    with contextlib.suppress(AlreadyExistsError):
        await client.create(VIRTUAL_MACHINES, demo_vm(cmdline))
        log.info("created the demo VM default/demo")
