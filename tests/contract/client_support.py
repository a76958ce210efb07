"""An API server in the test's event loop and ObjectClients of both kinds on it (no tests here).

``api_clients`` yields ``(name, client_factory)`` pairs: ``in-process`` goes through the server's
in-process door, ``https`` through its TLS listener with a kubeconfig, each as the identity asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from vmplane.apiserver.app import ListenAddress, run_server
from vmplane.apiserver.authz import Role, user_for
from vmplane.apiserver.door import InProcessDoor
from vmplane.apiserver.tokens import create_token
from vmplane.app import ApiServerPlane, PlaneOptions
from vmplane.client.base import ObjectClient
from vmplane.client.config import Kubeconfig, https_client, read_kubeconfig


class _CapturingPlane(ApiServerPlane):
    """The API server's plane, keeping the door for the test."""

    door: InProcessDoor | None = None
    opened: asyncio.Event

    async def run(self, door: InProcessDoor) -> None:
        self.door = door
        self.opened.set()
        await super().run(door)


@dataclass
class RunningApi:
    data_dir: Path
    plane: _CapturingPlane
    kubeconfig: Kubeconfig

    def client(self, kind: str, role: Role = Role.ADMIN) -> ObjectClient:
        """A client of ``kind`` (``in-process`` or ``https``) acting as a fresh identity of ``role``."""
        if kind == "in-process":
            assert self.plane.door is not None
            return self.plane.door.client(user_for(role))
        _, token = create_token(self.data_dir, role)
        return https_client(Kubeconfig(self.kubeconfig.server, token, self.kubeconfig.ca_pem))


@contextlib.asynccontextmanager
async def running_api(data_dir: Path) -> AsyncIterator[RunningApi]:
    plane = _CapturingPlane(PlaneOptions(data_dir=data_dir, hypervisor="simulated"))
    plane.opened = asyncio.Event()
    ready: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_server(
            data_dir=data_dir,
            listen=ListenAddress("127.0.0.1", 0),
            plane=lambda _store: plane,
            on_ready=ready.set_result,
        )
    )
    try:
        path = await asyncio.wait_for(asyncio.shield(ready), 30)
        await asyncio.wait_for(plane.opened.wait(), 30)
        yield RunningApi(data_dir=data_dir, plane=plane, kubeconfig=read_kubeconfig(path))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


ClientFactory = Callable[..., ObjectClient]
