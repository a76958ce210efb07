"""``spec.volumes`` and ``spec.networks``: what backs each disk and interface."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity

__all__ = [
    "CloudInitNoCloud",
    "ContainerDisk",
    "DataVolumeSource",
    "EmptyDisk",
    "HostDisk",
    "MultusNetwork",
    "Network",
    "PersistentVolumeClaimSource",
    "PodNetwork",
    "Volume",
]


class ContainerDisk(WireModel):
    """A disk image resolved from the local image directory, used through a copy-on-write overlay."""

    image: str
    path: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None


class HostDisk(WireModel):
    """A disk image file on the host; ``DiskOrCreate`` creates it with ``capacity``."""

    path: str
    type: Literal["Disk", "DiskOrCreate"]
    capacity: Quantity | None = None
    shared: bool | None = None


class EmptyDisk(WireModel):
    """A blank disk created with the VMI and discarded with it."""

    capacity: Quantity


class SecretRef(WireModel):
    """A reference to a Secret by name."""

    name: str


class CloudInitNoCloud(WireModel):
    """cloud-init NoCloud data, served to the guest as a seed image."""

    user_data: str | None = None
    user_data_base64: str | None = None
    network_data: str | None = None
    network_data_base64: str | None = None
    secret_ref: SecretRef | None = None
    network_data_secret_ref: SecretRef | None = None


class PersistentVolumeClaimSource(WireModel):
    """A claim by name; ``hotpluggable`` allows attaching and detaching it while running."""

    claim_name: str
    read_only: bool | None = None
    hotpluggable: bool | None = None


class DataVolumeSource(WireModel):
    """A DataVolume by name; ``hotpluggable`` allows attaching and detaching it while running."""

    name: str
    hotpluggable: bool | None = None


class Volume(WireModel):
    """One volume; exactly one source is set."""

    name: str
    container_disk: ContainerDisk | None = None
    host_disk: HostDisk | None = None
    empty_disk: EmptyDisk | None = None
    cloud_init_no_cloud: CloudInitNoCloud | None = None
    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    data_volume: DataVolumeSource | None = None

    @property
    def hotpluggable(self) -> bool:
        """True when the volume may be attached or detached while the guest runs."""
        for source in (self.persistent_volume_claim, self.data_volume):
            if source is not None and source.hotpluggable:
                return True
        return False

    @property
    def sources(self) -> list[str]:
        """The wire names of the sources that are set (exactly one in a valid volume)."""
        return [alias for attr, alias in _VOLUME_SOURCES if getattr(self, attr) is not None]


_VOLUME_SOURCES = (
    ("container_disk", "containerDisk"),
    ("host_disk", "hostDisk"),
    ("empty_disk", "emptyDisk"),
    ("cloud_init_no_cloud", "cloudInitNoCloud"),
    ("persistent_volume_claim", "persistentVolumeClaim"),
    ("data_volume", "dataVolume"),
)


class PodNetwork(WireModel):
    """The default (pod) network."""

    vm_network_cidr: str | None = Field(default=None, alias="vmNetworkCIDR")
    vm_ipv6_network_cidr: str | None = Field(default=None, alias="vmIPv6NetworkCIDR")


class MultusNetwork(WireModel):
    """A secondary network by NetworkAttachmentDefinition name."""

    network_name: str
    default: bool | None = None


class Network(WireModel):
    """One network; exactly one source is set."""

    name: str
    pod: PodNetwork | None = None
    multus: MultusNetwork | None = None
