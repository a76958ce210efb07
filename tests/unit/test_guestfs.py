"""Who QEMU runs as and whether it can reach its guest directory (``hypervisor.guestfs``)."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from vmplane.hypervisor.guestfs import (
    CREATE_USER_COMMAND,
    QEMU_USER,
    GuestDirError,
    GuestUser,
    GuestUserError,
    default_guest_dir,
    guest_user,
    make_dirs,
    prepare_guest_dir,
    privilege_argv,
    searchable,
    unsearchable,
)

QEMU = GuestUser(name=QEMU_USER, uid=990, gid=980, switch=True)


def passwd(name: str, uid: int, gid: int) -> pwd.struct_passwd:
    return pwd.struct_passwd((name, "x", uid, gid, "", "/nonexistent", "/usr/sbin/nologin"))


def stat_result(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
    return os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


def test_as_root_qemu_runs_as_the_system_user() -> None:
    user = guest_user(euid=0, lookup=lambda name: passwd(name, 990, 980))
    assert user == QEMU


def test_as_root_a_missing_system_user_names_the_install_command() -> None:
    def missing(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    with pytest.raises(GuestUserError, match=f"{QEMU_USER}, which does not exist: run {CREATE_USER_COMMAND}"):
        guest_user(euid=0, lookup=missing)


def test_a_system_user_with_uid_0_is_refused() -> None:
    with pytest.raises(GuestUserError, match="must be unprivileged"):
        guest_user(euid=0, lookup=lambda name: passwd(name, 0, 0))


def test_not_root_qemu_runs_as_the_invoking_user_without_switching() -> None:
    nobody = pwd.getpwnam("nobody")
    assert guest_user(euid=nobody.pw_uid) == GuestUser(
        name="nobody", uid=nobody.pw_uid, gid=nobody.pw_gid, switch=False
    )


def test_switching_users_puts_setpriv_in_front_with_no_supplementary_groups() -> None:
    assert privilege_argv(QEMU) == ["setpriv", "--reuid=990", "--regid=980", "--clear-groups", "--"]


def test_the_invoking_user_needs_no_prefix() -> None:
    assert privilege_argv(GuestUser(name="me", uid=1000, gid=1000, switch=False)) == []


def test_the_default_guest_directory_is_outside_the_data_directory_only_as_root() -> None:
    assert default_guest_dir(euid=0, data_dir=Path("/root/d")) == Path("/var/lib/vmplane")
    assert default_guest_dir(euid=1000, data_dir=Path("/home/u/d")) == Path("/home/u/d/guests")


@pytest.mark.parametrize(
    ("mode", "uid", "gid", "expected"),
    [
        pytest.param(0o711, 0, 0, True, id="others-search"),
        pytest.param(0o700, 0, 0, False, id="root-only"),
        pytest.param(0o700, 990, 0, True, id="owned-by-qemu"),
        pytest.param(0o070, 990, 0, False, id="owned-by-qemu-without-owner-bit"),
        pytest.param(0o710, 0, 980, True, id="group-search"),
        pytest.param(0o701, 0, 980, False, id="group-without-group-bit"),
    ],
)
def test_searchable_follows_the_owner_then_group_then_other_bits(
    mode: int, uid: int, gid: int, expected: bool
) -> None:
    assert searchable(stat_result(mode, uid, gid), QEMU) is expected


def test_unsearchable_names_the_first_closed_ancestor() -> None:
    modes = {"/": 0o755, "/tmp": 0o1777, "/tmp/pytest-of-root": 0o700, "/tmp/pytest-of-root/g": 0o711}

    def stat_of(path: Path) -> os.stat_result:
        return stat_result(modes[str(path)])

    assert unsearchable(Path("/tmp/pytest-of-root/g"), QEMU, stat_of=stat_of) == Path("/tmp/pytest-of-root")
    modes["/tmp/pytest-of-root"] = 0o711
    assert unsearchable(Path("/tmp/pytest-of-root/g"), QEMU, stat_of=stat_of) is None


def test_make_dirs_gives_every_created_directory_the_mode_despite_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        make_dirs(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o711
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o711


def test_prepare_guest_dir_refuses_a_directory_qemu_cannot_reach(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    stranger = GuestUser(name="stranger", uid=os.geteuid() + 4242, gid=os.getegid() + 4242, switch=True)
    with pytest.raises(
        GuestDirError,
        match=f"cannot enter /.* \\(mode 0700\\) on the way to the guest directory {closed}/guests",
    ):
        prepare_guest_dir(closed / "guests", stranger)


def test_prepare_guest_dir_makes_its_top_levels_searchable_not_listable(tmp_path: Path) -> None:
    me = GuestUser(name="me", uid=os.geteuid(), gid=os.getegid(), switch=False)
    root = tmp_path / "guests"
    root.mkdir(mode=0o755)
    prepare_guest_dir(root, me)
    for directory in (root, root / "machines", root / "volumes", root / "images"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o711, directory
