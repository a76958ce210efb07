"""QGA answers in upstream's shapes, and hostile answers reduced to what is well-formed."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.hypervisor.guest_info import (
    MAX_ITEMS,
    MAX_TEXT,
    GuestInterface,
    filesystem_list,
    guest_os_info,
    interfaces,
    user_list,
)

OSINFO = {
    "id": "vmplane-guest",
    "name": "vmplane test guest",
    "pretty-name": "vmplane test guest (busybox)",
    "version": "1",
    "version-id": "1",
    "kernel-release": "6.1.0-28-amd64",
    "kernel-version": "#1 SMP",
    "machine": "x86_64",
}


def test_guestosinfo_has_upstreams_fields() -> None:
    info = guest_os_info(
        info={"version": "stub-1", "supported_commands": [{"name": "guest-ping", "enabled": True}]},
        osinfo=OSINFO,
        hostname={"host-name": "demo"},
        timezone={"zone": "UTC", "offset": 0},
        users=[{"user": "root", "login-time": 1700000000.5}],
        fsinfo=[
            {"name": "sda", "mountpoint": "/", "type": "ext4", "used-bytes": 1, "total-bytes": 2, "disk": []}
        ],
    )
    assert info == {
        "guestAgentVersion": "stub-1",
        "supportedCommands": [{"name": "guest-ping", "enabled": True}],
        "hostname": "demo",
        "os": {
            "name": "vmplane test guest",
            "kernelRelease": "6.1.0-28-amd64",
            "version": "1",
            "prettyName": "vmplane test guest (busybox)",
            "versionId": "1",
            "kernelVersion": "#1 SMP",
            "machine": "x86_64",
            "id": "vmplane-guest",
        },
        "timezone": "UTC, 0",
        "userList": [{"userName": "root", "loginTime": 1700000000.5}],
        "fsInfo": {
            "disks": [
                {
                    "diskName": "sda",
                    "mountPoint": "/",
                    "fileSystemType": "ext4",
                    "usedBytes": 1,
                    "totalBytes": 2,
                }
            ]
        },
    }


def test_userlist_is_a_list_object_of_users() -> None:
    assert user_list([{"user": "ada", "domain": "LAB", "login-time": 5}]) == {
        "metadata": {},
        "items": [{"userName": "ada", "domain": "LAB", "loginTime": 5}],
    }


def test_filesystemlist_keeps_the_disk_mapping() -> None:
    fs = [
        {
            "name": "vda1",
            "mountpoint": "/data",
            "type": "xfs",
            "disk": [{"bus-type": "virtio", "serial": "s1"}],
        }
    ]
    assert filesystem_list(fs)["items"] == [
        {
            "diskName": "vda1",
            "mountPoint": "/data",
            "fileSystemType": "xfs",
            "disk": [{"busType": "virtio", "serial": "s1"}],
        }
    ]


@pytest.mark.parametrize(
    "answer",
    [None, "garbage", 42, {"not": "a list"}, [1, "x", None], [{"user": 7}]],
    ids=["none", "string", "number", "object", "non-objects", "wrong-types"],
)
def test_a_malformed_user_answer_yields_no_users(answer: Any) -> None:
    assert user_list(answer) == {"metadata": {}, "items": []}


def test_long_strings_are_cut() -> None:
    assert user_list([{"user": "u" * 10_000}])["items"][0]["userName"] == "u" * MAX_TEXT


def test_long_lists_are_cut() -> None:
    assert len(filesystem_list([{"name": "x"}] * 10_000)["items"]) == MAX_ITEMS


def test_a_malformed_osinfo_leaves_the_os_empty() -> None:
    info = guest_os_info(
        info="x", osinfo=["not", "a", "map"], hostname=3, timezone={"offset": "x"}, users=None, fsinfo=None
    )
    assert info == {"os": {}}


def test_interfaces_without_loopback_with_checked_addresses() -> None:
    reply = [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{"ip-address": "127.0.0.1"}],
        },
        {
            "name": "eth0",
            "hardware-address": "02:00:00:00:00:0A",
            "ip-addresses": [
                {"ip-address": "10.0.2.15", "prefix": 24},
                {"ip-address": "not-an-ip; rm -rf /"},
                {"ip-address": 5},
            ],
        },
        {"hardware-address": "02:00:00:00:00:0b"},
    ]
    assert interfaces(reply) == (
        GuestInterface(name="eth0", mac="02:00:00:00:00:0a", ip_addresses=("10.0.2.15",)),
    )
