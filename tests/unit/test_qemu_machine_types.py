"""The machine-type allowlist: q35 names parsed from ``-machine help`` (captured from QEMU 7.2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmplane.hypervisor.qemu.machine_types import MachineTypesError, parse_machine_help, q35_machine_types

CAPTURED = (Path(__file__).parents[1] / "data" / "qemu-7.2-machine-help.txt").read_text()


def test_q35_alias_and_versions_are_listed_in_qemus_order() -> None:
    names = parse_machine_help(CAPTURED)
    assert names[:3] == ("q35", "pc-q35-7.2", "pc-q35-7.1")
    assert "pc-q35-2.4" in names


def test_machines_without_pcie_root_ports_are_left_out() -> None:
    names = parse_machine_help(CAPTURED)
    assert not {"pc", "pc-i440fx-7.2", "microvm", "isapc", "none", "x-remote"} & set(names)
    assert all(name == "q35" or name.startswith("pc-q35-") for name in names)


def test_the_header_and_descriptions_are_not_names() -> None:
    assert parse_machine_help("Supported machines are:\nq35   Standard PC (Q35 + ICH9, 2009)\n") == ("q35",)


def test_a_line_with_option_syntax_is_no_machine_name() -> None:
    assert parse_machine_help("q35,firmware=/x  crafted\npc-q35-7.2 fine\n") == ("pc-q35-7.2",)


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")
def test_the_installed_qemu_offers_q35() -> None:
    assert {"q35", "pc-q35-7.2"} <= set(q35_machine_types())


def test_a_missing_binary_is_a_machine_types_error() -> None:
    with pytest.raises(MachineTypesError, match="cannot run"):
        q35_machine_types("/nonexistent/qemu-system-x86_64")
