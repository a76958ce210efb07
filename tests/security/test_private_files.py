"""Issue 8, files private: what ``vmplane serve`` (QEMU driver) keeps on disk is its own only.

The data directory holds the store (every object, cloud-init userData included), the API token, the
kubeconfig and TLS keys: 0700, tightened even when it existed wider, with the store, its WAL and index
0600. QEMU's files live in the guest directory, 0711 and searchable by QEMU's user; ``serve`` refuses
one QEMU's user cannot reach.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from plane_support import Plane
from qemu_user_support import qemu_user

pytestmark = pytest.mark.requires("qemu")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    qemu_user()
    tmp = tmp_path_factory.mktemp("served")
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)
    (tmp / "home").mkdir()
    plane = Plane(data_dir=data_dir, home=tmp / "home")
    plane.start()
    try:
        yield plane
    finally:
        if plane.process is not None and plane.process.poll() is None:
            plane.stop()
        plane.kill_guests()


def test_a_pre_existing_data_directory_is_tightened_to_0700(served: Plane) -> None:
    assert mode(served.data_dir) == 0o700


def test_the_store_and_its_wal_are_owner_only(served: Plane) -> None:
    store = served.data_dir / "store.db"
    present = [p for p in (store, Path(f"{store}-wal"), Path(f"{store}-shm")) if p.exists()]
    assert present[:2] == [store, Path(f"{store}-wal")]
    assert {p.name: mode(p) for p in present} == {p.name: 0o600 for p in present}


def test_token_and_kubeconfig_are_owner_only(served: Plane) -> None:
    assert mode(served.data_dir / "token") == 0o600
    assert mode(served.data_dir / "kubeconfig") == 0o600


def test_the_guest_directory_is_searchable_not_listable(served: Plane) -> None:
    for directory in ("", "machines", "volumes", "images"):
        assert mode(served.guest_dir / directory) == 0o711, directory


def test_serve_refuses_a_guest_directory_qemu_cannot_reach(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("not root: QEMU runs as the invoking user, who owns every directory here")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    plane = Plane(data_dir=tmp_path / "data", home=tmp_path, guest_dir=closed / "guests")
    with pytest.raises(RuntimeError, match="exited with 1"):
        plane.start()
    assert plane.process is not None
    assert plane.process.stdout is not None
    plane.process.stdout.close()
    assert plane.log_path is not None
    log = plane.log_path.read_text()
    assert "vmplane serve: QEMU runs as vmplane-qemu" in log
    assert "cannot enter" in log
    assert "--guest-dir" in log
