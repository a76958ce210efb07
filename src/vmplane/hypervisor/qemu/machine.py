"""One QEMU the driver runs or adopted: its exit watch, QMP session, record and pending unplugs.

Everything that happens *to* a machine without being asked lands here: the process exits (the
outcome is decided by ``observe.exit_outcome`` and written to the record), QMP events arrive
(``DEVICE_DELETED`` completes an unplug and frees the device's backend, ``DEVICE_UNPLUG_GUEST_ERROR``
fails it), the connection drops. Each of these calls ``on_change(name)`` so the agent re-reads the
machine; the callback carries no event, keeping the agent level-triggered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from qemu.qmp import ExecuteError, Message

from vmplane.hypervisor.base import HotplugError, HypervisorError, MachineState, OnChange, UnplugTimeoutError
from vmplane.hypervisor.qemu import naming
from vmplane.hypervisor.qemu.observe import exit_outcome, peripheral_types
from vmplane.hypervisor.qemu.process import ProcessWatch, stderr_tail
from vmplane.hypervisor.qemu.records import MachineRecord, write_record
from vmplane.hypervisor.qemu.session import QmpSession, QmpUnavailableError

__all__ = ["QemuMachine"]

log = logging.getLogger(__name__)

#: Events after which the machine may look different: the agent is told to re-read it.
_NOTIFY = frozenset(
    {
        "DEVICE_DELETED",
        "DEVICE_UNPLUG_GUEST_ERROR",
        "SHUTDOWN",
        "STOP",
        "RESUME",
        "GUEST_PANICKED",
        "RESET",
        "MIGRATION",
    }
)
_RECONNECT_INTERVAL = 1.0


class QemuMachine:
    def __init__(self, *, record: MachineRecord, run_dir: Path, on_change: OnChange) -> None:
        self.record = record
        self.name = record.name
        self.run_dir = run_dir
        self.files = naming.run_files(run_dir)
        self.lock = asyncio.Lock()
        #: None while the process runs; the outcome once it ended.
        self.state: MachineState | None = record.exit_state
        self.reason = record.exit_reason
        self.stop_requested = False
        self._shutdown_event: dict[str, Any] | None = None
        #: device id -> resolves with None (deleted) or an error message (the guest refused).
        self.unplugs: dict[str, asyncio.Future[str | None]] = {}
        self._watch: ProcessWatch | None = None
        self._session: QmpSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._finished = asyncio.Event()
        self._on_change = on_change
        #: Called with each ``MIGRATION`` event's status (the driver's migration bookkeeping).
        self.on_migration: Callable[[str], None] | None = None
        self._closed = False
        if self.state is not None:
            self._finished.set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def attach(self, *, connect_timeout: float) -> None:
        """Watch the process and connect QMP; for a QEMU just spawned or one left by an earlier agent."""
        try:
            self._watch = ProcessWatch(self.record.pid)
        except ProcessLookupError as err:
            self._finish(None, reason="QEMU exited before it could be watched")
            raise HypervisorError(f"{self.name}: QEMU pid {self.record.pid} is gone") from err
        self.spawn(self._await_exit(self._watch))
        await self._connect(connect_timeout)

    async def _connect(self, timeout: float) -> None:
        watch = self._watch
        session = QmpSession(self.name, self.files["qmp"], on_event=self._on_event, on_lost=self._on_lost)
        await session.connect(timeout=timeout, alive=lambda: watch is not None and watch.alive)
        self._session = session

    def mark_gone(self, reason: str) -> None:
        """The recorded process no longer exists (it ended while no agent watched it)."""
        self._finish(None, reason=reason)

    async def wait_exit(self, timeout: float) -> bool:
        """Whether the machine ended within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._finished.wait()
        except TimeoutError:
            return False
        return True

    def kill(self) -> None:
        if self._watch is not None:
            self._watch.kill()

    async def close(self) -> None:
        """Stop watching and disconnect; the process keeps running."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._watch is not None:
            self._watch.close()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _await_exit(self, watch: ProcessWatch) -> None:
        status = await watch.exited
        self._finish(status)

    def _finish(self, wait_status: int | None, *, reason: str | None = None) -> None:
        if self.state is not None:
            return
        state, why = exit_outcome(
            wait_status=wait_status,
            stop_requested=self.stop_requested,
            shutdown_event=self._shutdown_event,
            stderr_tail=stderr_tail(self.files["stderr"]),
        )
        self.state, self.reason = state, reason or why
        log.info("%s: QEMU ended: %s (%s)", self.name, state.value, self.reason)
        self.record = replace(self.record, exit_state=state, exit_reason=self.reason)
        self.save()
        for future in self.unplugs.values():
            if not future.done():
                future.set_result(None)
        self.unplugs.clear()
        self._finished.set()
        if self._session is not None:
            self.spawn(self._session.close())
        self._notify()

    def save(self) -> None:
        try:
            write_record(self.files["record"], self.record)
        except OSError as err:  # the run directory was removed (forget) while we were writing
            log.warning("%s: cannot write machine record: %s", self.name, err)

    # -- commands --------------------------------------------------------------------------------

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """A QMP command; ``HypervisorError`` if the machine is gone, ``ExecuteError`` if QEMU refuses."""
        if self.state is not None:
            raise HypervisorError(f"{self.name} is not running ({self.state.value}: {self.reason})")
        if self._session is None or not self._session.connected:
            raise QmpUnavailableError(f"{self.name}: no QMP connection")
        return await self._session.execute(command, arguments)

    async def hotplug(self, command: str, arguments: dict[str, Any]) -> Any:
        """A QMP command whose refusal is a ``HotplugError``."""
        try:
            return await self.execute(command, arguments)
        except ExecuteError as err:
            raise HotplugError(f"{self.name}: {command} refused: {err}") from err

    async def unplug(self, device_id: str, *, timeout: float) -> None:
        """``device_del`` and wait for ``DEVICE_DELETED`` and the backend cleanup; idempotent.

        On timeout the unplug stays pending (``observe`` lists it) and completes whenever the guest
        lets go of the device.
        """
        future = self.unplugs.get(device_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self.unplugs[device_id] = future
            try:
                await self.execute("device_del", {"id": device_id})
            except ExecuteError as err:
                if "already in the process of unplug" not in str(err):
                    self.unplugs.pop(device_id, None)
                    if err.error_class != "DeviceNotFound":
                        raise HotplugError(f"{self.name}: device_del {device_id} refused: {err}") from err
                    await self._free_backend(device_id)  # gone already; drop a leftover backend
                    return
            except BaseException:
                self.unplugs.pop(device_id, None)
                raise
        try:
            async with asyncio.timeout(timeout):
                error = await asyncio.shield(future)
        except TimeoutError as err:
            raise UnplugTimeoutError(
                f"{self.name}: the guest did not release {device_id} within {timeout:g}s"
            ) from err
        if error is not None:
            raise HotplugError(error)
        if self.state is not None:
            raise HypervisorError(f"{self.name} ended while {device_id} was being unplugged")

    async def resume(self) -> None:
        """Apply what the command line cannot express, then let a guest started with ``-S`` run."""
        status = await self.execute("query-status")
        if status["status"] != "prelaunch":
            return
        for nic, up in self.record.links.items():
            if not up:
                await self.execute("set_link", {"name": naming.nic_device_id(nic), "up": False})
        await self.execute("cont")

    async def free_orphaned_backends(self) -> None:
        """Free backends whose device was deleted while no agent listened for ``DEVICE_DELETED``."""
        devices = peripheral_types(await self.execute("qom-list", {"path": "/machine/peripheral"}))
        drives = {naming.drive_node(d) for dev in devices if (d := naming.disk_name_of(dev)) is not None}
        nodes = await self.execute("query-named-block-nodes", {"flat": True})
        objects = await self.execute("qom-list", {"path": "/objects"})
        orphans: list[tuple[str, dict[str, str]]] = [
            ("blockdev-del", {"node-name": node})
            for n in nodes
            if (node := n["node-name"]).startswith("drive-") and node not in drives
        ]
        for obj in objects:
            dimm = obj["name"].removeprefix("mem-")
            if naming.dimm_index(dimm) is not None and dimm not in devices:
                orphans.append(("object-del", {"id": obj["name"]}))
        for command, arguments in orphans:
            log.info("%s: freeing orphaned backend: %s %s", self.name, command, arguments)
            with contextlib.suppress(ExecuteError):
                await self.execute(command, arguments)

    def set_link_record(self, nic: str, up: bool | None) -> None:
        self.record = self.record.with_link(nic, up)
        self.save()

    # -- events ----------------------------------------------------------------------------------

    def _on_event(self, message: Message) -> None:
        event = message["event"]
        raw = message.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if event == "DEVICE_DELETED" and "device" in data:
            # Child objects (e.g. a virtio-backend) send DEVICE_DELETED with only a path.
            self.spawn(self._device_deleted(data["device"]))
            return  # _device_deleted notifies once the backend is freed
        if event == "DEVICE_UNPLUG_GUEST_ERROR" and "device" in data:
            future = self.unplugs.pop(data["device"], None)
            if future is not None and not future.done():
                future.set_result(f"{self.name}: the guest refused to release {data['device']}")
        elif event == "SHUTDOWN":
            self._shutdown_event = data
        elif event == "MIGRATION" and self.on_migration is not None:
            self.on_migration(str(data.get("status", "")))
        if event in _NOTIFY:
            self._notify()

    async def _device_deleted(self, device_id: str) -> None:
        await self._free_backend(device_id)
        if (nic := naming.nic_name_of(device_id)) is not None:
            self.set_link_record(nic, None)
        future = self.unplugs.pop(device_id, None)
        if future is not None and not future.done():
            future.set_result(None)
        self._notify()

    async def _free_backend(self, device_id: str) -> None:
        cleanup = naming.backend_cleanup(device_id)
        if cleanup is None:
            return
        command, arguments = cleanup
        try:
            await self.execute(command, arguments)
        except (ExecuteError, HypervisorError) as err:
            log.debug("%s: %s %s after %s was deleted: %s", self.name, command, arguments, device_id, err)

    def _on_lost(self) -> None:
        if self.state is None and not self._closed:
            self.spawn(self._recover())

    async def _recover(self) -> None:
        """QMP dropped: either QEMU is exiting (the exit watch reports it) or reconnect."""
        while not self._closed and not await self.wait_exit(_RECONNECT_INTERVAL):
            try:
                await self._connect(_RECONNECT_INTERVAL)
            except HypervisorError as err:
                log.warning("%s: QMP reconnect failed: %s", self.name, err)
                continue
            log.info("%s: QMP reconnected", self.name)
            self._notify()
            return

    # -- helpers ---------------------------------------------------------------------------------

    def _notify(self) -> None:
        try:
            self._on_change(self.name)
        except Exception:
            log.exception("%s: on_change callback failed", self.name)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` for as long as this machine is watched (cancelled by ``close``)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
