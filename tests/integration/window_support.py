"""A control plane whose clock tests move (maintenance windows open without waiting hours), and
helpers for MaintenanceWindows and labelled VMs over the kubernetes client.

Imported by the maintenance-window suites (this module holds no tests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from rollout_support import Cluster, InProcessServer

from vmplane.app import ControlPlane, PlaneOptions
from vmplane.store.base import Store

WINDOWS = ("vmplane.io", "v1alpha1", "maintenancewindows")
APPROVAL = "vmplane.io/restart-approval"
ALL_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


class ShiftedClock:
    """The wall clock plus an offset tests move forward (thread-safe: the plane runs in a thread)."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return datetime.now(UTC) + self._offset

    def jump(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


@dataclass
class WindowPlane(InProcessServer):
    """``InProcessServer`` with the shifted clock injected and windows re-checked every 0.1 s."""

    clock: ShiftedClock = field(default_factory=ShiftedClock)

    def _make_plane(self, store: Store) -> ControlPlane:
        options = PlaneOptions(
            data_dir=self.data_dir, hypervisor="simulated", crash_backoff=0.2, window_poll_interval=0.1
        )
        self.plane = ControlPlane(store, options, clock=self.clock, hypervisor=self._make_hypervisor)
        return self.plane


VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  labels: {{group: {group}, priority: "{priority}"}}
  annotations: {{vmplane.io/restart-approval: {approval}}}
spec:
  runStrategy: Always
  template:
    spec:
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 1Gi}}
        devices:
          disks:
          - {{name: root, disk: {{bus: virtio}}}}
      volumes:
      - {{name: root, containerDisk: {{image: quay.io/containerdisks/fedora:latest}}}}
      terminationGracePeriodSeconds: 0
"""


def window_body(name: str, group: str, start: datetime, **spec: Any) -> dict[str, Any]:
    """A window selecting ``group`` every day from ``start`` (UTC, to the minute) for an hour."""
    end = start + timedelta(hours=1)
    return {
        "apiVersion": "vmplane.io/v1alpha1",
        "kind": "MaintenanceWindow",
        "metadata": {"name": name},
        "spec": {
            "schedule": {
                "days": ALL_DAYS,
                "start": start.strftime("%H:%M"),
                "end": end.strftime("%H:%M"),
                "timeZone": "UTC",
            },
            "selector": {"matchLabels": {"group": group}},
            "priorityLabel": "priority",
            **spec,
        },
    }


class Windows:
    """MaintenanceWindow calls and waits over one cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.custom: client.CustomObjectsApi = cluster.custom

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.create_cluster_custom_object(*WINDOWS, body)
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_cluster_custom_object(*WINDOWS, name)
        return result

    def delete(self, name: str) -> None:
        self.custom.delete_cluster_custom_object(*WINDOWS, name)

    def run(self, name: str) -> dict[str, Any]:
        return dict((self.get(name).get("status") or {}).get("run") or {})
