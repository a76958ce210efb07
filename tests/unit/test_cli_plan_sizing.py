"""``vmplane plan OLD NEW --sizing FILE``: an instance-type switch planned offline, as the server does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vmplane.cli.main import main

SIZING = """\
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterInstancetype
metadata: {name: small}
spec: {cpu: {guest: 1}, memory: {guest: 1Gi}}
---
apiVersion: instancetype.kubevirt.io/v1beta1
kind: VirtualMachineClusterInstancetype
metadata: {name: medium}
spec: {cpu: {guest: 2}, memory: {guest: 2Gi}}
"""


def _vm(path: Path, instancetype: str) -> str:
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"instancetype": {"name": instancetype}, "template": {"spec": {"domain": {"devices": {}}}}},
    }
    path.write_text(yaml.safe_dump(vm))
    return str(path)


@pytest.mark.parametrize(
    ("strategy", "live", "pending_sources"),
    [("LiveUpdate", 2, set()), ("Stage", 0, {"instancetype"})],
)
def test_an_instancetype_switch_planned_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], strategy: str, live: int, pending_sources: set[str]
) -> None:
    sizing = tmp_path / "sizing.yaml"
    sizing.write_text(SIZING)
    old, new = _vm(tmp_path / "old.yaml", "small"), _vm(tmp_path / "new.yaml", "medium")
    assert main(["plan", old, new, "--sizing", str(sizing), "--strategy", strategy, "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["live"]) == live
    assert {p["source"] for p in document["pending"]} == pending_sources


def test_an_unknown_instancetype_offline_says_to_pass_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = _vm(tmp_path / "old.yaml", "small"), _vm(tmp_path / "new.yaml", "medium")
    assert main(["plan", old, new]) == 2
    assert "not found (pass it with --sizing FILE)" in capsys.readouterr().err
