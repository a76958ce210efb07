"""Parsing port-forward and ssh targets and ports, and the ssh command line that uses the tunnel."""

from __future__ import annotations

import pytest

from vmplane.cli.port_forward import Target, parse_ports, parse_target, ssh_argv


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("vm/demo", Target("virtualmachines", "demo")),
        ("vmi/demo", Target("virtualmachineinstances", "demo")),
        ("fedora@vm/demo", Target("virtualmachines", "demo", "fedora")),
    ],
    ids=["vm", "vmi", "user"],
)
def test_targets(text: str, target: Target) -> None:
    assert parse_target(text) == target


@pytest.mark.parametrize(
    "text",
    ["demo", "pod/demo", "vm/../x", "vm/Demo", "a;b@vm/demo"],
    ids=["bare", "kind", "dots", "upper", "user"],
)
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="vm"):
        parse_target(text)


@pytest.mark.parametrize(
    ("text", "ports"),
    [("8080:80", (8080, 80)), ("80", (80, 80)), ("0:22", (0, 22))],
    ids=["pair", "one", "any"],
)
def test_ports(text: str, ports: tuple[int, int]) -> None:
    assert parse_ports(text) == ports


@pytest.mark.parametrize("text", ["x:80", "80:0", "70000:80"], ids=["word", "remote0", "big"])
def test_bad_ports_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_ports(text)


def test_ssh_runs_through_the_port_forward_proxy_command() -> None:
    argv = ssh_argv(
        Target("virtualmachines", "demo", "fedora"),
        user=None,
        proxy=["python", "-m", "vmplane.cli.main", "port-forward", "--stdio", "vm/demo", "22"],
        extra=["-i", "key"],
    )
    assert argv == [
        "ssh",
        "-o",
        "ProxyCommand=python -m vmplane.cli.main port-forward --stdio vm/demo 22",
        "-o",
        "HostKeyAlias=vm.demo",
        "-l",
        "fedora",
        "-i",
        "key",
        "vm.demo",
    ]
