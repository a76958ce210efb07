"""SqliteStore against a real file and a real ``kill -9``: what was acknowledged stays stored.

A writer subprocess creates one object and updates a shared counter per step, printing each
acknowledged write's resourceVersion only after the store returned it. The test kills it with
SIGKILL mid-stream, several rounds in a row (each round starts from the file the previous kill left
behind), and then checks the file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmplane.store.base import StoreError
from vmplane.store.sqlite import SqliteStore

RESOURCE = "things"
ACKS_BEFORE_KILL = 150
# One round per delay between the last counted acknowledgement and the SIGKILL, so that the kill
# lands at different points of a write (mid-fsync, between statements, while printing).
KILL_DELAYS = (0.0, 0.0007, 0.002, 0.005)

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from vmplane.store.sqlite import SqliteStore

    def thing(name: str, n: int) -> dict[str, object]:
        return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"n": n}}

    async def main(path: str, round_: str) -> None:
        store = SqliteStore.open(Path(path))
        try:
            await store.get("things", "ns", "counter")
        except Exception:
            await store.create("things", thing("counter", -1))
        step = 0
        while True:
            name = f"r{round_}-{step}"
            made = await store.create("things", thing(name, step))
            print(made["metadata"]["resourceVersion"], name, step, flush=True)
            counter = await store.update("things", thing("counter", step))
            print(counter["metadata"]["resourceVersion"], "counter", step, flush=True)
            step += 1

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@dataclass
class Ack:
    """One write the writer reported as stored."""

    revision: int
    name: str
    step: int


@dataclass
class Outcome:
    """The store file after the kills, and every write acknowledged before them."""

    path: Path
    acks: list[Ack] = field(default_factory=list)


def _write_until_killed(path: Path, round_: int, delay: float) -> list[Ack]:
    acks: list[Ack] = []
    command = [sys.executable, "-c", WRITER, str(path), str(round_)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        try:
            for line in writer.stdout:
                revision, name, step = line.split()
                acks.append(Ack(int(revision), name, int(step)))
                if len(acks) == ACKS_BEFORE_KILL:
                    time.sleep(delay)
                    os.kill(writer.pid, signal.SIGKILL)
                    break
            # Lines already in the pipe were printed after their commit: they were acknowledged. The
            # kill may cut the last one short; a line without its newline acknowledges nothing.
            for line in writer.stdout:
                if not line.endswith("\n"):
                    break
                revision, name, step = line.split()
                acks.append(Ack(int(revision), name, int(step)))
        finally:
            writer.kill()  # no-op once it is dead; stops it if an assertion above failed
    assert writer.returncode == -signal.SIGKILL
    assert len(acks) >= ACKS_BEFORE_KILL, "the writer died before it was killed"
    return acks


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Several writer rounds on one file, each ended by SIGKILL."""
    result = Outcome(tmp_path_factory.mktemp("durability") / "store.db")
    for round_, delay in enumerate(KILL_DELAYS):
        result.acks += _write_until_killed(result.path, round_, delay)
    return result


def test_store_file_passes_integrity_check_after_kill_9(outcome: Outcome) -> None:
    with sqlite3.connect(outcome.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()


async def test_every_acknowledged_create_survives_kill_9(outcome: Outcome) -> None:
    store = SqliteStore.open(outcome.path)
    try:
        stored = {item["metadata"]["name"]: item for item in (await store.list(RESOURCE, "ns")).items}
    finally:
        await store.close()
    for ack in outcome.acks:
        if ack.name != "counter":
            assert stored[ack.name]["spec"] == {"n": ack.step}
            assert stored[ack.name]["metadata"]["resourceVersion"] == str(ack.revision)


async def test_last_acknowledged_update_survives_kill_9(outcome: Outcome) -> None:
    store = SqliteStore.open(outcome.path)
    try:
        counter = await store.get(RESOURCE, "ns", "counter")
    finally:
        await store.close()
    last = max((a for a in outcome.acks if a.name == "counter"), key=lambda a: a.revision)
    # The writer may have committed one more update after its last printed line, never fewer.
    assert int(counter["metadata"]["resourceVersion"]) >= last.revision
    assert counter["spec"]["n"] >= 0


async def test_revisions_keep_increasing_across_kills(outcome: Outcome) -> None:
    revisions = [ack.revision for ack in outcome.acks]
    assert revisions == sorted(set(revisions))
    store = SqliteStore.open(outcome.path)
    try:
        assert await store.current_revision() >= revisions[-1]
    finally:
        await store.close()


async def test_watch_history_replays_every_acknowledged_write_after_kill_9(outcome: Outcome) -> None:
    store = SqliteStore.open(outcome.path)
    try:
        head = await store.current_revision()
        replayed: list[int] = []
        async for event in store.watch(RESOURCE, since=0):
            replayed.append(event.resource_version)
            if event.resource_version == head:
                break
    finally:
        await store.close()
    assert replayed == list(range(1, head + 1))  # the log has no gap, even around the kills
    assert {ack.revision for ack in outcome.acks} <= set(replayed)


async def test_second_open_of_a_live_store_fails(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "store.db")
    try:
        with pytest.raises(StoreError):
            SqliteStore.open(tmp_path / "store.db")
    finally:
        await store.close()
    await SqliteStore.open(tmp_path / "store.db").close()  # close released the lock


async def test_reopen_after_close_keeps_objects_revision_and_history(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "store.db")
    created = await store.create(RESOURCE, {"metadata": {"name": "a"}, "spec": {"n": 1}})
    await store.delete(RESOURCE, "", "a")
    await store.create(RESOURCE, {"metadata": {"name": "b"}})
    await store.close()
    store = SqliteStore.open(tmp_path / "store.db")
    try:
        assert await store.current_revision() == 3
        assert (await anext(store.watch(RESOURCE, since=0))).object == created
        assert (await store.create(RESOURCE, {"metadata": {"name": "c"}}))["metadata"][
            "resourceVersion"
        ] == "4"
    finally:
        await store.close()


# Many writers at once, so that writes queue up while a commit is in flight and are committed
# together: the kill lands inside and between batches.
BURST_WRITERS = 32
BURST = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from vmplane.store.sqlite import SqliteStore

    async def writer(store, round_, index):
        step = 0
        while True:
            name = f"b{round_}-{index}-{step}"
            thing = {"metadata": {"name": name, "namespace": "ns"}, "spec": {"n": step}}
            made = await store.create("things", thing)
            print(made["metadata"]["resourceVersion"], name, step, flush=True)
            step += 1

    async def main(path, round_, writers):
        store = SqliteStore.open(Path(path))
        await asyncio.gather(*(writer(store, round_, i) for i in range(writers)))

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def _burst_until_killed(path: Path, round_: int, delay: float) -> list[Ack]:
    acks: list[Ack] = []
    command = [sys.executable, "-c", BURST, str(path), str(round_), str(BURST_WRITERS)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as writer:
        assert writer.stdout is not None
        try:
            for line in writer.stdout:
                if not line.endswith("\n"):
                    break
                revision, name, step = line.split()
                acks.append(Ack(int(revision), name, int(step)))
                if len(acks) == ACKS_BEFORE_KILL:
                    time.sleep(delay)
                    os.kill(writer.pid, signal.SIGKILL)
        finally:
            writer.kill()
    assert writer.returncode == -signal.SIGKILL
    assert len(acks) >= ACKS_BEFORE_KILL, "the writer died before it was killed"
    return acks


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """Rounds of concurrent creates (committed in batches), each ended by SIGKILL."""
    result = Outcome(tmp_path_factory.mktemp("burst") / "store.db")
    for round_, delay in enumerate(KILL_DELAYS):
        result.acks += _burst_until_killed(result.path, round_, delay)
    return result


async def test_every_write_acknowledged_in_a_batched_burst_survives_kill_9(burst: Outcome) -> None:
    with sqlite3.connect(burst.path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    store = SqliteStore.open(burst.path)
    try:
        stored = {item["metadata"]["name"]: item for item in (await store.list(RESOURCE, "ns")).items}
        head = await store.current_revision()
        replayed = []
        async for event in store.watch(RESOURCE, since=0):
            replayed.append(event)
            if event.resource_version == head:
                break
    finally:
        await store.close()
    for ack in burst.acks:
        assert stored[ack.name]["spec"] == {"n": ack.step}
        assert stored[ack.name]["metadata"]["resourceVersion"] == str(ack.revision)
    # Nothing torn: the log is dense, and every object is the last change the log holds for it.
    assert [event.resource_version for event in replayed] == list(range(1, head + 1))
    last = {event.object["metadata"]["name"]: event.object for event in replayed}
    assert last == stored


async def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    store = SqliteStore.open(tmp_path / "store.db")
    try:
        await asyncio.gather(
            *(store.create(RESOURCE, {"metadata": {"name": f"t{i}"}, "spec": {"n": i}}) for i in range(200))
        )
        assert store.commits < 200
        assert await store.current_revision() == 200
    finally:
        await store.close()
