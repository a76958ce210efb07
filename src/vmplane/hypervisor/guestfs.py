"""Who QEMU runs as, and the guest directory it can reach as that user.

QEMU is confined: when the agent runs as root, every guest's QEMU is *started* as the unprivileged
system user ``vmplane-qemu`` (created at install by ``scripts/create-qemu-user.sh``), through
``setpriv`` in front of its argv, never as root. It has to be started so rather than use ``-runas``
because ``-sandbox ...,elevateprivileges=deny`` forbids the ``setuid`` that ``-runas`` does. When the
agent is not root, QEMU runs as the invoking user (logged once): there is nobody else to switch to.

The data directory (store, tokens, kubeconfig, TLS keys) is 0700 and owned by the agent, and so are
``/root`` and pytest's temporary directories, so QEMU's files cannot live under it. They live in a
separate **guest directory** (``PlaneOptions.guest_dir``, ``vmplane serve --guest-dir``; by default
``/var/lib/vmplane`` as root, ``<data-dir>/guests`` otherwise) whose every ancestor QEMU's user must be
able to search. Its layout::

    <guest-dir>/                      0711 agent   searchable, not listable
      machines/                       0711 agent
        <machine>/                    0711 agent   machine.json (the record), qemu.stderr
          qemu/                       0700 QEMU    qmp.sock (0600), console.log, qemu.pid
      volumes/<ns>/claims/            0711 agent   <claim>.qcow2            0600 QEMU
      volumes/<ns>/vmis/<name>/       0711 agent   emptyDisks, overlays, cloud-init seeds: 0600 QEMU
      images/<image>/...              agent        base images and kernels: readable (0644) only
      hostdisks/                      agent        the default hostDisk directory

Directories stay the agent's and only *files* QEMU must open for writing are handed to its user, so
a compromised QEMU can write its own disks but cannot create, rename or replace anything: not the
machine record the agent trusts when it adopts a guest (it sits beside, not inside, QEMU's own
directory), not a disk swapped for a symlink. Disks hot-plugged later are opened by path
(``blockdev-add``) as QEMU's user, which the 0711 directories allow. All guests share one user (as
libvirt's ``qemu`` user without sVirt): this confines QEMU against the host, not one guest against
another's files.

``GuestUser`` and the pure checks (``guest_user``, ``privilege_argv``, ``unsearchable``) decide; the
few functions at the end (``make_dirs``, ``hand_over``, ``prepare_guest_dir``) act.
"""

from __future__ import annotations

import logging
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CREATE_USER_COMMAND",
    "DIR_MODE",
    "FILE_MODE",
    "PRIVATE_DIR_MODE",
    "QEMU_USER",
    "GuestDirError",
    "GuestSetupError",
    "GuestUser",
    "GuestUserError",
    "default_guest_dir",
    "guest_user",
    "hand_over",
    "log_identity",
    "make_dirs",
    "prepare_guest_dir",
    "privilege_argv",
    "searchable",
    "unsearchable",
]

log = logging.getLogger(__name__)

QEMU_USER = "vmplane-qemu"
CREATE_USER_COMMAND = "scripts/create-qemu-user.sh"
#: Directories on QEMU's path: searchable by everyone, listable and writable by the agent only.
DIR_MODE = 0o711
#: QEMU's own directory and the files it opens for writing.
PRIVATE_DIR_MODE = 0o700
FILE_MODE = 0o600
_GUEST_SUBDIRS = ("machines", "volumes", "images")


class GuestSetupError(Exception):
    """This host cannot run confined guests as configured; the message says what to do."""


class GuestUserError(GuestSetupError):
    """The QEMU system user is missing."""


class GuestDirError(GuestSetupError):
    """QEMU's user cannot reach the guest directory."""


@dataclass(frozen=True, slots=True)
class GuestUser:
    """The account QEMU processes run as; ``switch`` when it is not the agent's own."""

    name: str
    uid: int
    gid: int
    switch: bool


def guest_user(*, euid: int, lookup: Callable[[str], pwd.struct_passwd] = pwd.getpwnam) -> GuestUser:
    """``vmplane-qemu`` when the agent is root, else the agent's own user; GuestUserError if missing."""
    if euid != 0:
        entry = pwd.getpwuid(euid)
        return GuestUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, switch=False)
    try:
        entry = lookup(QEMU_USER)
    except KeyError as err:
        raise GuestUserError(
            f"QEMU guests run as the system user {QEMU_USER}, which does not exist: run "
            f"{CREATE_USER_COMMAND} (useradd --system --user-group --no-create-home "
            f"--shell /usr/sbin/nologin {QEMU_USER})"
        ) from err
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise GuestUserError(f"system user {QEMU_USER} has uid or gid 0; it must be unprivileged")
    return GuestUser(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, switch=True)


_logged_unswitched: set[int] = set()


def log_identity(user: GuestUser) -> None:
    """Say once per process that QEMU runs unswitched (the agent is not root)."""
    if not user.switch and user.uid not in _logged_unswitched:
        _logged_unswitched.add(user.uid)
        log.info("not running as root: QEMU guests run as the invoking user %s (uid %d)", user.name, user.uid)


def privilege_argv(user: GuestUser) -> list[str]:
    """What goes in front of QEMU's argv so it starts as ``user`` (``setpriv`` execs it: same pid)."""
    if not user.switch:
        return []
    return ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--"]


def default_guest_dir(*, euid: int, data_dir: Path) -> Path:
    """``/var/lib/vmplane`` as root (QEMU's user cannot enter a 0700 data directory), else inside it."""
    return Path("/var/lib/vmplane") if euid == 0 else data_dir / "guests"


def searchable(st: os.stat_result, user: GuestUser) -> bool:
    """Whether ``user`` (with no supplementary groups, as ``setpriv --clear-groups``) may enter it."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == user.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def unsearchable(
    path: Path, user: GuestUser, *, stat_of: Callable[[Path], os.stat_result] = os.stat
) -> Path | None:
    """The first directory from ``/`` down to ``path`` (included) that ``user`` cannot enter."""
    absolute = Path(os.path.abspath(path))
    for directory in (*reversed(absolute.parents), absolute):
        if not searchable(stat_of(directory), user):
            return directory
    return None


# -- effects ------------------------------------------------------------------------------------


def make_dirs(path: Path, *, mode: int = DIR_MODE) -> None:
    """``mkdir -p`` giving every directory it creates ``mode`` exactly (mkdir's mode meets the umask)."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(directory, mode)


def hand_over(path: Path, user: GuestUser, *, mode: int = FILE_MODE) -> None:
    """Give ``path`` (a file the agent just made in its own directory) to QEMU's user with ``mode``."""
    if user.switch:
        os.chown(path, user.uid, user.gid, follow_symlinks=False)
    os.chmod(path, mode)


def prepare_guest_dir(root: Path, user: GuestUser) -> None:
    """Create the guest directory's top levels (0711) and check ``user`` can reach them."""
    make_dirs(root)
    for directory in (root, *(root / name for name in _GUEST_SUBDIRS)):
        make_dirs(directory)
        os.chmod(directory, DIR_MODE)
    blocked = unsearchable(root, user)
    if blocked is not None:
        mode = stat.S_IMODE(blocked.stat().st_mode)
        raise GuestDirError(
            f"QEMU runs as {user.name} (uid {user.uid}), which cannot enter {blocked} (mode {mode:04o}) "
            f"on the way to the guest directory {root}: choose a --guest-dir whose parent directories "
            "others may search (o+x), such as /var/lib/vmplane"
        )
