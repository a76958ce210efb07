"""Wire types: KubeVirt user-guide manifests round-trip without loss; unknown fields are reported by path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vmplane.api.decoding import FieldValidation, decode
from vmplane.api.errors import CauseType, InvalidObjectError
from vmplane.api.kubevirt import KubeVirt, RolloutStrategy
from vmplane.api.vm import VirtualMachine

MANIFESTS = sorted((Path(__file__).parent.parent / "data" / "manifests").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_user_guide_manifest_round_trips_without_loss(path: Path) -> None:
    manifest = load(path)
    assert VirtualMachine.model_validate(manifest).to_wire() == manifest


def test_unknown_field_is_a_cause_naming_its_path_under_strict() -> None:
    manifest = load(MANIFESTS[0])
    manifest["spec"]["template"]["spec"]["domain"]["devices"]["disks"][1]["sizeGB"] = 3
    with pytest.raises(InvalidObjectError) as caught:
        decode(VirtualMachine, manifest, kind="VirtualMachine")
    [cause] = caught.value.causes
    assert cause.field == "spec.template.spec.domain.devices.disks[1].sizeGB"
    assert cause.reason is CauseType.UNKNOWN_FIELD


def test_unknown_field_is_a_warning_and_dropped_under_warn() -> None:
    manifest = load(MANIFESTS[0])
    manifest["spec"]["bogus"] = True
    decoded = decode(VirtualMachine, manifest, kind="VirtualMachine", field_validation=FieldValidation.WARN)
    assert decoded.warnings == ['unknown field "spec.bogus"']
    assert "bogus" not in decoded.value.spec.to_wire()


def test_unknown_field_is_dropped_silently_under_ignore() -> None:
    manifest = load(MANIFESTS[0])
    manifest["spec"]["bogus"] = True
    decoded = decode(VirtualMachine, manifest, kind="VirtualMachine", field_validation=FieldValidation.IGNORE)
    assert decoded.warnings == []


def test_every_invalid_field_is_reported_not_just_the_first() -> None:
    manifest = load(MANIFESTS[0])
    domain = manifest["spec"]["template"]["spec"]["domain"]
    domain["cpu"] = {"sockets": "many", "cores": -1}
    domain["memory"] = {"guest": "1Gx"}
    with pytest.raises(InvalidObjectError) as caught:
        decode(VirtualMachine, manifest, kind="VirtualMachine")
    assert sorted(c.field for c in caught.value.causes) == [
        "spec.template.spec.domain.cpu.cores",
        "spec.template.spec.domain.cpu.sockets",
        "spec.template.spec.domain.memory.guest",
    ]


def test_rollout_strategy_absent_means_stage() -> None:
    kubevirt = KubeVirt.model_validate({"metadata": {"name": "kubevirt"}, "spec": {"configuration": {}}})
    assert kubevirt.spec.configuration.rollout_strategy is RolloutStrategy.STAGE


def test_rollout_strategy_other_than_stage_or_live_update_is_rejected() -> None:
    with pytest.raises(InvalidObjectError) as caught:
        decode(
            KubeVirt,
            {"metadata": {"name": "kv"}, "spec": {"configuration": {"vmRolloutStrategy": "Eager"}}},
            kind="KubeVirt",
        )
    [cause] = caught.value.causes
    assert cause.field == "spec.configuration.vmRolloutStrategy"
    assert cause.reason is CauseType.FIELD_VALUE_NOT_SUPPORTED
