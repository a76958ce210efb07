"""``KubeVirt`` (cluster configuration) and ``ControllerRevision`` (the boot snapshot)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, Literal

from pydantic import Field

from vmplane.api.meta import Condition, ObjectMeta
from vmplane.api.migration import MigrationConfiguration, MigrationLimits
from vmplane.api.model import WireModel
from vmplane.api.quantity import Quantity

__all__ = [
    "DEFAULT_MAX_HOTPLUG_RATIO",
    "ControllerRevision",
    "KubeVirt",
    "KubeVirtConfiguration",
    "LiveUpdateConfiguration",
    "RolloutStrategy",
    "WorkloadUpdateStrategy",
    "configuration_of",
    "installation",
]

DEFAULT_MAX_HOTPLUG_RATIO = 4


class RolloutStrategy(str, Enum):
    """``spec.configuration.vmRolloutStrategy``; absent means ``Stage`` in vmplane."""

    STAGE = "Stage"
    LIVE_UPDATE = "LiveUpdate"


class LiveUpdateConfiguration(WireModel):
    """Cluster-wide hotplug ceilings."""

    max_hotplug_ratio: int | None = Field(default=None, ge=1)
    max_cpu_sockets: int | None = Field(default=None, ge=0)
    max_guest: Quantity | None = None


class DeveloperConfiguration(WireModel):
    """``developerConfiguration``."""

    feature_gates: list[str] | None = None
    cpu_allocation_ratio: int | None = Field(default=None, ge=1)


class ArchConfiguration(WireModel):
    """Per-architecture defaults."""

    machine_type: str | None = None
    ovmf_path: str | None = None
    emulated_machines: list[str] | None = None


class ArchitectureConfiguration(WireModel):
    """``architectureConfiguration``."""

    amd64: ArchConfiguration | None = None
    arm64: ArchConfiguration | None = None
    # to_camel would spell these ppc64Le and s390X.
    ppc64le: ArchConfiguration | None = Field(default=None, alias="ppc64le")
    s390x: ArchConfiguration | None = Field(default=None, alias="s390x")
    default_architecture: str | None = None


class KubeVirtConfiguration(WireModel):
    """``spec.configuration``: the rollout strategy and the cluster defaults that enter effective specs."""

    vm_rollout_strategy: RolloutStrategy | None = None
    live_update_configuration: LiveUpdateConfiguration | None = None
    developer_configuration: DeveloperConfiguration | None = None
    cpu_model: str | None = None
    machine_type: str | None = None
    architecture_configuration: ArchitectureConfiguration | None = None
    eviction_strategy: Literal["None", "LiveMigrate", "LiveMigrateIfPossible", "External"] | None = None
    migrations: MigrationConfiguration | None = None

    @property
    def migration_limits(self) -> MigrationLimits:
        """The migration limits in force (upstream's defaults where ``migrations`` sets none)."""
        return MigrationLimits.of(self.migrations)

    @property
    def rollout_strategy(self) -> RolloutStrategy:
        """The strategy in force: ``Stage`` unless ``LiveUpdate`` is set."""
        return self.vm_rollout_strategy or RolloutStrategy.STAGE

    @property
    def max_hotplug_ratio(self) -> int:
        """The hotplug ratio in force (4 unless configured)."""
        luc = self.live_update_configuration
        if luc is None or luc.max_hotplug_ratio is None:
            return DEFAULT_MAX_HOTPLUG_RATIO
        return luc.max_hotplug_ratio

    @property
    def default_machine_type(self) -> str | None:
        """The amd64 machine type default (``architectureConfiguration`` wins over legacy ``machineType``)."""
        arch = self.architecture_configuration
        if arch is not None and arch.amd64 is not None and arch.amd64.machine_type:
            return arch.amd64.machine_type
        return self.machine_type


class WorkloadUpdateStrategy(WireModel):
    """``spec.workloadUpdateStrategy``: how VMIs of an older installation are moved to a new one.

    vmplane keeps the setting (upstream's user guide patches it in) but has no installation updates
    to apply it to. Field descriptions are upstream's.
    """

    workload_update_methods: list[Literal["LiveMigrate", "Evict"]] | None = Field(
        default=None,
        description="WorkloadUpdateMethods defines the methods that can be used to disrupt workloads "
        "during automated workload updates. When multiple methods are present, the least disruptive "
        "method takes precedence over more disruptive methods. For example if both LiveMigrate and "
        "Evict methods are listed, only VMs which are not live migratable will be restarted/shutdown. "
        "An empty list defaults to no automated workload updating.",
    )
    batch_eviction_size: int | None = Field(
        default=None,
        ge=1,
        description="BatchEvictionSize Represents the number of VMIs that can be forced updated per the "
        "BatchShutdownInteral interval. Defaults to 10",
    )
    batch_eviction_interval: str | None = Field(
        default=None,
        description="BatchEvictionInterval Represents the interval to wait before issuing the next "
        "batch of shutdowns. Defaults to 1 minute",
    )


def _kept(what: str) -> Any:
    return Field(
        default=None, description=f"{what} (kept as given: vmplane has no components of its own to deploy)."
    )


class KubeVirtSpec(WireModel):
    """``spec`` of the KubeVirt object. The operator-facing fields (images, placement of KubeVirt's
    own components, component patches) are kept as given: vmplane has no components to place.
    Descriptions are upstream's where upstream has one."""

    configuration: KubeVirtConfiguration = Field(default_factory=KubeVirtConfiguration)
    image_tag: str | None = None
    image_registry: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = Field(
        default=None, description="The ImagePullPolicy to use."
    )
    image_pull_secrets: list[dict[str, Any]] | None = _kept(
        "The imagePullSecrets to pull the container images from"
    )
    certificate_rotate_strategy: dict[str, Any] | None = _kept("How KubeVirt's certificates are rotated")
    customize_components: dict[str, Any] | None = _kept("Patches and flags for KubeVirt's components")
    infra: dict[str, Any] | None = _kept(
        "selectors and tolerations that should apply to KubeVirt infrastructure components"
    )
    workloads: dict[str, Any] | None = _kept(
        "selectors and tolerations that should apply to KubeVirt workloads"
    )
    monitor_namespace: str | None = _kept("The namespace Prometheus is deployed in")
    monitor_account: str | None = _kept(
        "The name of the Prometheus service account that needs read-access to KubeVirt endpoints"
    )
    service_monitor_namespace: str | None = _kept("The namespace the service monitor will be deployed")
    product_name: str | None = _kept("Designate the apps.kubevirt.io/part-of label for KubeVirt components")
    product_version: str | None = _kept(
        "Designate the apps.kubevirt.io/version label for KubeVirt components"
    )
    product_component: str | None = _kept(
        "Designate the apps.kubevirt.io/component label for KubeVirt components"
    )
    workload_update_strategy: WorkloadUpdateStrategy | None = None
    uninstall_strategy: Literal["RemoveWorkloads", "BlockUninstallIfWorkloadsExist"] | None = None


class KubeVirtStatus(WireModel):
    """``status`` of the KubeVirt object, written by ``controller.kubevirt_status``."""

    phase: str | None = None
    conditions: list[Condition] | None = None
    observed_generation: int | None = None
    observed_kube_virt_version: str | None = Field(
        default=None, description="The vmplane version the status was written by (v<version>)."
    )
    observed_kube_virt_registry: str | None = Field(
        default=None, description="Unset: vmplane pulls no KubeVirt images."
    )
    target_kube_virt_version: str | None = Field(
        default=None, description="The version being deployed: always the running vmplane's."
    )
    target_kube_virt_registry: str | None = Field(
        default=None, description="Unset: vmplane pulls no KubeVirt images."
    )
    operator_version: str | None = Field(default=None, description="The running vmplane's version.")
    default_architecture: str | None = Field(
        default=None, description="The architecture VMs get when they name none: this host's."
    )
    outdated_virtual_machine_instance_workloads: int | None = Field(
        default=None, description="VMIs running under an older installation: always 0 in vmplane."
    )


class KubeVirt(WireModel):
    """The installation's configuration object (``kubevirt/kubevirt``)."""

    api_version: Literal["kubevirt.io/v1"] = "kubevirt.io/v1"
    kind: Literal["KubeVirt"] = "KubeVirt"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: KubeVirtSpec = Field(default_factory=KubeVirtSpec)
    status: KubeVirtStatus | None = None


def installation(kubevirts: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The installation's KubeVirt object: ``kubevirt/kubevirt``, else the first one (None: none)."""
    if not kubevirts:
        return None
    return next(
        (
            k
            for k in kubevirts
            if (k.get("metadata") or {}).get("name") == "kubevirt"
            and (k.get("metadata") or {}).get("namespace") == "kubevirt"
        ),
        kubevirts[0],
    )


def configuration_of(kubevirts: Sequence[Mapping[str, Any]]) -> KubeVirtConfiguration:
    """The configuration of the installation's KubeVirt object (defaults when there is none)."""
    chosen = installation(kubevirts)
    if chosen is None:
        return KubeVirtConfiguration()
    return KubeVirt.model_validate(chosen).spec.configuration


class ControllerRevision(WireModel):
    """``apps/v1`` ControllerRevision: immutable ``data`` (the VM spec at boot) and a ``revision`` number."""

    api_version: Literal["apps/v1"] = "apps/v1"
    kind: Literal["ControllerRevision"] = "ControllerRevision"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    data: dict[str, Any] | None = None
    revision: int
