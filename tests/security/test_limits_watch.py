"""Issue 8, Deliver 4 (watches): a watcher that never reads is closed and costs bounded memory, and
the store's watch history is bounded by bytes as well as by count.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from limits_support import LimitsServer, serving

from vmplane.store import watching
from vmplane.store.base import ExpiredError, Store
from vmplane.store.sqlite import SqliteStore
from vmplane.testing.memory_store import MemoryStore

REVISIONS = "/apis/apps/v1/namespaces/default/controllerrevisions"
UPDATES = 400
ANNOTATION = 200 * 1024  # under the 256 KiB annotation limit; 400 of them are 80 MB of events
MIB = 1024


def _revision(name: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": name}, "revision": 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    with serving(tmp_path_factory.mktemp("watch")) as running:
        yield running


def _open_unread_watch(server: LimitsServer) -> socket.socket:
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)  # the kernel holds little for it
    raw.settimeout(10)
    raw.connect((server.host, server.port))
    context = ssl.create_default_context(cafile=str(server.ca_file))
    sock = context.wrap_socket(raw, server_hostname=server.host)
    auth = f"Authorization: Bearer {server.token}\r\n"
    sock.sendall(f"GET {REVISIONS}?watch=1 HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode())
    return sock


def _closed_by_server(sock: socket.socket, timeout: float) -> bool:
    """Read what is there; True if the server ended the connection within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if not sock.recv(1 << 20):
                return True
        except TimeoutError:
            return False
        except (ConnectionError, OSError):
            return True
    return False


@pytest.mark.integration
def test_a_watcher_that_never_reads_is_closed_and_memory_stays_bounded(server: LimitsServer) -> None:
    assert server.request("POST", REVISIONS, body=_revision("bulk"))[0] == 201
    sock = _open_unread_watch(server)
    try:
        time.sleep(0.5)
        before = server.rss_kib()
        for index in range(UPDATES):
            value = f"{index:08d}" + "x" * ANNOTATION
            status, body, _ = server.request(
                "PATCH",
                f"{REVISIONS}/bulk",
                body={"metadata": {"annotations": {"payload": value}}},
                content_type="application/merge-patch+json",
            )
            assert status == 200, body
        peak = server.rss_kib()
        assert _closed_by_server(sock, timeout=30), "the server kept a watcher that never reads"
    finally:
        sock.close()
    growth = (peak - before) / MIB
    # The watcher's buffer is 16 MiB; without the bound the 80 MB of events were pinned behind it.
    assert growth < 48, f"server RSS grew {growth:.0f} MiB behind a watcher that never reads"
    assert "closing watch of controllerrevisions.apps" in server.log()


@pytest.mark.integration
def test_a_watcher_that_reads_is_not_closed(server: LimitsServer) -> None:
    assert server.request("POST", REVISIONS, body=_revision("read"))[0] in (201, 409)
    response = server.http().request(
        "GET",
        f"{server.url}{REVISIONS}?watch=1&timeoutSeconds=5",
        headers={"Authorization": f"Bearer {server.token}"},
        preload_content=False,
        timeout=30,
    )
    for index in range(60):
        status, _, _ = server.request(
            "PATCH",
            f"{REVISIONS}/read",
            body={"metadata": {"annotations": {"payload": f"{index}" + "y" * ANNOTATION}}},
            content_type="application/merge-patch+json",
        )
        assert status == 200
    lines = [json.loads(line) for line in response.stream(1 << 20) for line in line.splitlines() if line]
    response.release_conn()
    names = {e["object"]["metadata"]["name"] for e in lines if e["type"] in ("ADDED", "MODIFIED")}
    assert "read" in names


async def _history_store(kind: str, tmp_path: Path, *, history_bytes: int) -> Store:
    if kind == "sqlite":
        return SqliteStore.open(tmp_path / "store.db", history_bytes=history_bytes)
    return MemoryStore(history_bytes=history_bytes)


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_watch_history_is_bounded_by_bytes(kind: str, tmp_path: Path) -> None:
    store = await _history_store(kind, tmp_path, history_bytes=1024 * 1024)
    try:
        for index in range(40):
            obj = {"metadata": {"name": f"o{index}", "namespace": "default"}, "data": "z" * 100_000}
            await store.create("things", obj)
        with pytest.raises(ExpiredError):
            await anext(store.watch("things", since=1))
        replayed = store.watch("things", since=35)
        assert [(await anext(replayed)).resource_version for _ in range(5)] == [36, 37, 38, 39, 40]
        await replayed.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
    if kind == "sqlite":
        assert (tmp_path / "store.db").stat().st_size + _wal_size(tmp_path) < 10 * 1024 * 1024


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_the_latest_change_is_kept_even_when_larger_than_the_history(kind: str, tmp_path: Path) -> None:
    store = await _history_store(kind, tmp_path, history_bytes=1000)
    try:
        await store.create("things", {"metadata": {"name": "a", "namespace": "x"}, "data": "z" * 5000})
        revision = await store.create(
            "things", {"metadata": {"name": "b", "namespace": "x"}, "data": "z" * 5000}
        )
        events = store.watch("things", since=int(revision["metadata"]["resourceVersion"]) - 1)
        assert (await anext(events)).object["metadata"]["name"] == "b"
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()


def _wal_size(directory: Path) -> int:
    wal = directory / "store.db-wal"
    return os.path.getsize(wal) if wal.exists() else 0


async def test_sqlite_history_bytes_survive_a_reopen(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "store.db", history_bytes=300_000)
    for index in range(5):
        await store.create(
            "things", {"metadata": {"name": f"o{index}", "namespace": "d"}, "data": "z" * 50_000}
        )
    await store.close()
    store = SqliteStore.open(tmp_path / "store.db", history_bytes=300_000)
    try:
        for index in range(5, 10):
            await store.create(
                "things", {"metadata": {"name": f"o{index}", "namespace": "d"}, "data": "z" * 50_000}
            )
        with pytest.raises(ExpiredError):
            await anext(store.watch("things", since=2))
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "memory"])
async def test_a_store_watcher_behind_by_bytes_still_gets_every_change_once(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watching, "LIVE_QUEUE_BYTES", 50_000)  # two bodies; the event count stays low
    monkeypatch.setattr(watching, "REPLAY_PAGE_BYTES", 50_000)
    store = await _history_store(kind, tmp_path, history_bytes=10 * 1024 * 1024)
    try:
        events = store.watch("things", since=0)
        await store.create("things", {"metadata": {"name": "o0", "namespace": "d"}, "data": "z" * 20_000})
        assert (await anext(events)).resource_version == 1
        for index in range(1, 10):  # overflows the live queue by size: the watch replays from the log
            await store.create(
                "things", {"metadata": {"name": f"o{index}", "namespace": "d"}, "data": "z" * 20_000}
            )
        revisions = [(await anext(events)).resource_version for _ in range(9)]
        assert revisions == list(range(2, 11))
        await events.aclose()  # type: ignore[attr-defined]
    finally:
        await store.close()
