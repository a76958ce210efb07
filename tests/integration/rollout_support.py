"""An in-process ``vmplane serve`` (API, controllers, scheduler, agent on a simulated hypervisor) in a
thread, so tests can inject hypervisor failures; plus watch-based waits with deadlines.

Imported by the rollout suites (this module holds no tests).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from vmplane.apiserver.app import ListenAddress, run_server
from vmplane.app import ControlPlane, PlaneOptions
from vmplane.hypervisor.base import Hypervisor, OnChange
from vmplane.hypervisor.simulated import SimulatedHost, SimulatedHypervisor
from vmplane.store.base import Store

GROUP, VERSION = "kubevirt.io", "v1"
WAIT = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class InProcessServer:
    """One control plane in a background thread; ``host`` survives restarts (machines keep running)."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    host: SimulatedHost = field(default_factory=SimulatedHost)
    hypervisor: SimulatedHypervisor | None = None
    plane: ControlPlane | None = None
    kubeconfig: Path | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _task: asyncio.Task[None] | None = None
    _thread: threading.Thread | None = None

    def _make_hypervisor(self, on_change: OnChange) -> Hypervisor:
        self.hypervisor = SimulatedHypervisor(on_change=on_change, host=self.host, latency=0.01)
        return self.hypervisor

    def _make_plane(self, store: Store) -> ControlPlane:
        options = PlaneOptions(data_dir=self.data_dir, hypervisor="simulated", crash_backoff=0.2)
        self.plane = ControlPlane(store, options, hypervisor=self._make_hypervisor)
        return self.plane

    def start(self) -> None:
        ready: Future[Path] = Future()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def main() -> None:
            self._task = asyncio.current_task()
            await run_server(
                data_dir=self.data_dir,
                listen=ListenAddress("127.0.0.1", self.port),
                plane=self._make_plane,
                on_ready=ready.set_result,
            )

        def run() -> None:
            try:
                loop.run_until_complete(main())
            except asyncio.CancelledError:
                pass
            except BaseException as err:  # surfaced to the test waiting for readiness
                if not ready.done():
                    ready.set_exception(err)
            finally:
                # Let every task the server left behind (connection handlers) finish closing.
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self.kubeconfig = ready.result(timeout=30)

    def stop(self) -> None:
        assert self._loop is not None
        assert self._thread is not None
        task = self._task
        if task is not None:
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the control plane did not stop"

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the control plane's event loop (failure injection)."""
        assert self._loop is not None
        done: Future[None] = Future()

        def run() -> None:
            try:
                fn(*args)
                done.set_result(None)
            except BaseException as err:
                done.set_exception(err)

        self._loop.call_soon_threadsafe(run)
        done.result(timeout=10)

    def api(self) -> client.ApiClient:
        """A kubernetes client for this server.

        Connections are not kept alive: the server is stopped and started within one test process,
        and an idle keep-alive connection would outlive the event loop that accepted it.
        """
        assert self.kubeconfig is not None
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        api.set_default_header("Connection", "close")
        return api


class Cluster:
    """kubernetes-client helpers over one server: objects, strategy, and waits on watches."""

    def __init__(self, api: client.ApiClient, namespace: str = "default") -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def set_strategy(self, strategy: str | None, **configuration: Any) -> None:
        body = {"spec": {"configuration": {"vmRolloutStrategy": strategy, **configuration}}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, "kubevirt", "kubevirts", "kubevirt", body)

    def create_vm(self, manifest: str) -> dict[str, Any]:
        body = yaml.safe_load(manifest)
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "virtualmachines", body
        )
        return result

    def patch_vm(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, "virtualmachines", name, patch
        )
        return result

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
        except client.ApiException as err:
            if err.status == 404:
                return None
            raise
        return result

    def subresource(self, name: str, action: str, body: dict[str, Any] | None = None) -> Any:
        path = (
            f"/apis/subresources.kubevirt.io/v1/namespaces/{self.namespace}/virtualmachines/{name}/{action}"
        )
        return self.api.call_api(
            path,
            "PUT",
            body=body,
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_type="object",
            _return_http_data_only=True,
        )

    def wait(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any] | None], bool],
        timeout: float = WAIT,
    ) -> dict[str, Any] | None:
        """Return the object once ``predicate`` holds for it (None: deleted), watching with a deadline."""
        listed = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, field_selector=f"metadata.name={name}"
        )
        items = listed["items"]
        current = items[0] if items else None
        if predicate(current):
            return current
        stream = watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            field_selector=f"metadata.name={name}",
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=int(timeout),
        )
        last = current
        try:
            for event in stream:
                last = None if event["type"] == "DELETED" else event["object"]
                if predicate(last):
                    return last
        finally:
            stream.close()  # closes the watch connection now, not when the generator is collected
        raise AssertionError(f"{plural}/{name} never satisfied the wait; last seen: {last}")

    def events_about(self, name: str) -> list[str]:
        listed = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        return [f"{e.reason}: {e.message}" for e in listed.items]


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def printable(obj: dict[str, Any] | None) -> str | None:
    return ((obj or {}).get("status") or {}).get("printableStatus")
