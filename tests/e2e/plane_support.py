"""Shared by the control-plane e2e suite: ``vmplane serve`` on real QEMU, kubernetes-client waits on
watches, and the guest's console followed through ``vmplane console --follow``.

Imported by ``test_qemu_rollout.py`` (this module holds no tests). Every wait has a deadline and
returns as soon as its condition holds; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

GUEST = Path(__file__).resolve().parents[2] / "guest" / "out"
GROUP, VERSION = "kubevirt.io", "v1"
#: The test guest, as a kernel-boot image in the local image directory.
GUEST_IMAGE = "vmplane/test-guest:latest"
#: A small disk image served as a containerDisk.
SCRATCH_IMAGE = "vmplane/scratch:latest"
READY_TIMEOUT = 30.0

Status = dict[str, str]


def guest_cmdline() -> str:
    return (GUEST / "cmdline").read_text().strip()


def reachable_dir(prefix: str) -> Path:
    """A fresh 0711 directory under ``/tmp`` for a guest directory.

    QEMU runs as ``vmplane-qemu`` when the tests run as root, and pytest's own temporary directories
    (``/tmp/pytest-of-root``, 0700) are closed to it; the caller removes the directory.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o711)
    return path


def reachable_guest() -> tuple[Path, Path]:
    """The test guest's kernel and initrd copied where QEMU's user can read them (once per process).

    The checkout itself may lie under a directory closed to that user (a ``mktemp -d`` clone is 0700).
    """
    global _REACHABLE_GUEST
    if _REACHABLE_GUEST is None:
        folder = reachable_dir("vmplane-test-guest-")
        for name in ("vmlinuz", "initrd.img"):
            shutil.copyfile(GUEST / name, folder / name)
            os.chmod(folder / name, 0o644)
        _REACHABLE_GUEST = (folder / "vmlinuz", folder / "initrd.img")
    return _REACHABLE_GUEST


_REACHABLE_GUEST: tuple[Path, Path] | None = None


def install_images(guest_dir: Path) -> Path:
    """Copy the test guest into the image directory and make a containerDisk base; returns the base."""
    images = guest_dir / "images"
    kernel_dir = images / "vmplane_test-guest_latest"
    kernel_dir.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        shutil.copyfile(GUEST / name, kernel_dir / name)
    base = images / "vmplane_scratch_latest" / "disk" / "scratch.qcow2"
    base.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "32M"], check=True)
    return base


def kill_recorded_guests(guest_dir: Path) -> None:
    """SIGKILL every QEMU whose pidfile lies under ``guest_dir`` (one node's, or several nodes' below
    it): QEMU outlives its agent on purpose, so a test that stops agents must end their guests."""
    for pidfile in guest_dir.glob("**/machines/*/qemu/qemu.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def parse_status(line: str) -> Status:
    return dict(token.split("=", 1) for token in line.split()[1:] if "=" in token)


def listed(status: Status, key: str) -> list[str]:
    return [] if status[key] == "-" else status[key].split(",")


@dataclass
class Plane:
    """One ``vmplane serve --hypervisor qemu --accel tcg`` process on ``data_dir`` and ``guest_dir``."""

    data_dir: Path
    home: Path
    guest_dir: Path = field(default_factory=lambda: reachable_dir("vmplane-guests-"))
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    kubeconfig: Path | None = None
    log_path: Path | None = None

    def start(self) -> None:
        self.log_path = self.data_dir.parent / "serve.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "vmplane.cli.main",
                    "serve",
                    "--data-dir",
                    str(self.data_dir),
                    "--guest-dir",
                    str(self.guest_dir),
                    "--listen",
                    "127.0.0.1:0",
                    "--hypervisor",
                    "qemu",
                    "--accel",
                    "tcg",
                    *self.extra_args,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
            )
        line = self._ready_line(time.monotonic() + READY_TIMEOUT)
        self.kubeconfig = Path(line.split("kubeconfig:", 1)[1].strip())

    def _ready_line(self, deadline: float) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        buffer = b""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vmplane serve exited with {self.process.returncode}")
            readable, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if readable:
                buffer += os.read(self.process.stdout.fileno(), 4096)
                if b"\n" in buffer:
                    return buffer.split(b"\n", 1)[0].decode()
        raise TimeoutError("vmplane serve did not report readiness")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; guests keep running."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home)}

    def kubectl_result(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60, env=self.env()
        )

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        done = self.kubectl_result(*args, stdin=stdin)
        if done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def vmplane(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "vmplane.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(),
        )

    def qemu_pid(self, namespace: str, name: str) -> int:
        pidfile = self.guest_dir / "machines" / f"{namespace}_{name}" / "qemu" / "qemu.pid"
        return int(pidfile.read_text())

    def kill_guests(self) -> None:
        """SIGKILL every QEMU recorded under the guest directory, then remove it (teardown)."""
        kill_recorded_guests(self.guest_dir)
        shutil.rmtree(self.guest_dir, ignore_errors=True)

    def cluster(self) -> Cluster:
        assert self.kubeconfig is not None
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        api.set_default_header("Connection", "close")
        return Cluster(api)


class Cluster:
    """kubernetes-client calls and waits on watches."""

    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace

    def set_strategy(self, strategy: str) -> None:
        body = {"spec": {"configuration": {"vmRolloutStrategy": strategy}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt", body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return result

    def wait(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        timeout: float,
    ) -> dict[str, Any] | None:
        """The object once ``predicate`` holds for it (None: it is gone), watching with a deadline."""
        listing = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, field_selector=f"metadata.name={name}"
        )
        current = listing["items"][0] if listing["items"] else None
        if predicate(current):
            return current
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            field_selector=f"metadata.name={name}",
            resource_version=listing["metadata"]["resourceVersion"],
            timeout_seconds=max(1, int(timeout)),
        )
        last = current
        try:
            for event in stream:
                last = None if event["type"] == "DELETED" else event["object"]
                if predicate(last):
                    return last
        finally:
            stream.close()
        raise AssertionError(f"{plural}/{name}: condition not reached within {timeout}s; last: {last}")


def phase(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("phase")


def uid(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("uid")


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


@dataclass
class ConsoleFollower:
    """``vmplane console VM --follow`` in the background: the guest's status lines, as they come."""

    plane: Plane
    vm: str
    process: subprocess.Popen[str] | None = None
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    statuses: list[Status] = field(default_factory=list)

    def start(self) -> ConsoleFollower:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vmplane.cli.main", "console", self.vm, "--follow"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=self.plane.env(),
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait(self, predicate: Callable[[Status], bool], timeout: float) -> Status:
        """The first status line, from now on, for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.vm}: no matching console status within {timeout}s; last: {self.statuses[-1:]}"
                )
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"{self.vm}: the console stream ended; last: {self.statuses[-1:]}")
            if not line.startswith("VMPLANE-STATUS "):
                continue
            status = parse_status(line)
            self.statuses.append(status)
            with contextlib.suppress(KeyError, ValueError):
                if predicate(status):
                    return status

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()


def vm_manifest(name: str, *, host_disk: Path, memory: str = "1Gi") -> dict[str, Any]:
    """The e2e VM: the test guest by kernel boot, with a disk of every kind the agent creates."""
    return yaml.safe_load(
        f"""
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: Always
  template:
    spec:
      terminationGracePeriodSeconds: 0
      domain:
        cpu: {{sockets: 1}}
        memory: {{guest: {memory}}}
        firmware:
          kernelBoot:
            kernelArgs: "{guest_cmdline()}"
            container:
              image: {GUEST_IMAGE}
              kernelPath: /vmlinuz
              initrdPath: /initrd.img
        devices:
          disks:
          - {{name: scratch, disk: {{bus: virtio}}}}
          - {{name: empty, disk: {{bus: virtio}}}}
          - {{name: seed, disk: {{bus: virtio}}}}
          - {{name: host, disk: {{bus: virtio}}}}
          interfaces:
          - {{name: default, masquerade: {{}}}}
      networks:
      - {{name: default, pod: {{}}}}
      volumes:
      - {{name: scratch, containerDisk: {{image: "{SCRATCH_IMAGE}"}}}}
      - {{name: empty, emptyDisk: {{capacity: 64Mi}}}}
      - {{name: seed, cloudInitNoCloud: {{userData: "#cloud-config\\n"}}}}
      - {{name: host, hostDisk: {{path: "{host_disk}", type: DiskOrCreate, capacity: 16Mi}}}}
"""
    )


def add_disk_patch(name: str, claim: str) -> list[dict[str, Any]]:
    """A JSON patch adding a hotpluggable PVC disk."""
    spec = "/spec/template/spec"
    return [
        {
            "op": "add",
            "path": f"{spec}/domain/devices/disks/-",
            "value": {"name": name, "disk": {"bus": "virtio"}},
        },
        {
            "op": "add",
            "path": f"{spec}/volumes/-",
            "value": {"name": name, "persistentVolumeClaim": {"claimName": claim, "hotpluggable": True}},
        },
    ]


def add_nic_patch(name: str, network: str) -> list[dict[str, Any]]:
    """A JSON patch adding a bridge-bound interface on a multus network."""
    spec = "/spec/template/spec"
    return [
        {"op": "add", "path": f"{spec}/domain/devices/interfaces/-", "value": {"name": name, "bridge": {}}},
        {
            "op": "add",
            "path": f"{spec}/networks/-",
            "value": {"name": name, "multus": {"networkName": network}},
        },
    ]
