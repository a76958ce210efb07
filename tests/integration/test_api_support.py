"""Shared by the API integration suites: ``vmplane serve`` as a subprocess, and clients for it.

Imported by ``test_api_kubectl.py`` and ``test_api_client.py`` (this module holds no tests).
"""

from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

READY_TIMEOUT = 30.0


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    kubeconfig: Path
    home: Path
    url: str
    token: str
    ca_file: Path
    log: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home)}

    def vmplane(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``vmplane ARGS`` against this server (its kubeconfig); ``check``: fail the test on an error."""
        result = subprocess.run(
            [sys.executable, "-m", "vmplane.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vmplane {' '.join(args)} failed: {result.stderr}")
        return result

    def kubectl(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env(), **env},
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def http(self) -> urllib3.PoolManager:
        return urllib3.PoolManager(ca_certs=str(self.ca_file), cert_reqs="CERT_REQUIRED", retries=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        content_type: str = "application/json",
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], urllib3.HTTPHeaderDict]:
        """One request; returns status, decoded JSON body ({} when not JSON), headers."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        all_headers = {"Authorization": f"Bearer {self.token if token is None else token}", **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = content_type
        response = self.http().request(method, self.url + path, body=data, headers=all_headers, timeout=30)
        try:
            decoded = json.loads(response.data) if response.data else {}
        except ValueError:
            decoded = {}
        return response.status, decoded, response.headers

    def revision(self) -> str:
        """The store's current revision, as a list reports it."""
        status, body, _ = self.request("GET", "/api/v1/namespaces")
        assert status == 200
        return str(body["metadata"]["resourceVersion"])


def _read_ready_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    assert process.stdout is not None
    buffer = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vmplane serve exited with {process.returncode}")
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            chunk = os.read(process.stdout.fileno(), 4096)
            buffer += chunk
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
    raise TimeoutError("vmplane serve did not report readiness")


def start_server(
    tmp: Path, *extra: str, listen: str = "127.0.0.1:0", node_status_interval: float = 3600.0
) -> ApiServer:
    """``vmplane serve --hypervisor simulated`` on ``tmp/data`` with ``extra`` arguments, once ready.

    Its Node heartbeat is renewed hourly unless asked otherwise: the tests that check a request wrote
    nothing compare store revisions, which a heartbeat would move.
    """
    data_dir, home, log_path = tmp / "data", tmp / "home", tmp / "server.log"
    home.mkdir(parents=True, exist_ok=True)  # a restart on the same data dir reuses it
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "vmplane.cli.main", "serve", "--data-dir", str(data_dir)),
                *("--listen", listen, "--log-level", "debug", "--hypervisor", "simulated"),
                *("--node-status-interval", str(node_status_interval), *extra),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        line = _read_ready_line(process, time.monotonic() + READY_TIMEOUT)
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        _close(process)
        raise
    kubeconfig = Path(line.split("kubeconfig:", 1)[1].strip())
    config = yaml.safe_load(kubeconfig.read_text())
    return ApiServer(
        process=process,
        data_dir=data_dir,
        kubeconfig=kubeconfig,
        home=home,
        url=config["clusters"][0]["cluster"]["server"],
        token=config["users"][0]["user"]["token"],
        ca_file=data_dir / "tls" / "ca.crt",
        log=log_path,
    )


def _close(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def stop_server(server: ApiServer) -> int:
    """SIGTERM ``vmplane serve`` and wait for it (killed after 15 s); its exit code."""
    return terminate(server.process)


def terminate(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM a server process and wait for it (killed after 15 s); its exit code."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
        raise
    finally:
        _close(process)


def stop_process(process: subprocess.Popen[str]) -> None:
    """Kill a helper process (kubectl get -w, wait) and release its pipes."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    _close(process)


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_server(tmp_path_factory.mktemp("vmplane"))
    try:
        yield server
    finally:
        assert stop_server(server) == 0, "vmplane serve did not shut down cleanly"


class LineReader:
    """Lines of a long-running process's stdout, read by a thread so waits are bounded."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("expected line did not arrive")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty as err:
                raise TimeoutError("expected line did not arrive") from err
            if predicate(line):
                return line


#: The smallest VM the API accepts and the simulated hypervisor runs: no disks, no NICs.
SMALL_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
spec:
  runStrategy: {run_strategy}
  template:
    spec:
      domain:
        cpu: {{sockets: 1, cores: 1, threads: 1}}
        memory: {{guest: 1Gi}}
        devices: {{}}
      terminationGracePeriodSeconds: 0
"""


USER_GUIDE_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: testvm
spec:
  runStrategy: Halted
  template:
    metadata:
      labels:
        kubevirt.io/size: small
        kubevirt.io/domain: testvm
    spec:
      domain:
        devices:
          disks:
            - name: containerdisk
              disk:
                bus: virtio
            - name: cloudinitdisk
              disk:
                bus: virtio
          interfaces:
          - name: default
            masquerade: {}
        resources:
          requests:
            memory: 64M
      networks:
      - name: default
        pod: {}
      volumes:
        - name: containerdisk
          containerDisk:
            image: quay.io/kubevirt/cirros-container-disk-demo
        - name: cloudinitdisk
          cloudInitNoCloud:
            userDataBase64: SGkuXG4=
"""

CPU_HOTPLUG_VM = """\
apiVersion: kubevirt.io/v1
kind: VirtualMachine
metadata:
  name: {name}
  labels:
    app: hotplug
spec:
  runStrategy: Halted
  template:
    spec:
      domain:
        cpu:
          sockets: 2
          cores: 1
          threads: 1
          maxSockets: 8
        memory:
          guest: 128Mi
        devices:
          disks:
          - name: containerdisk
            disk:
              bus: virtio
      volumes:
      - name: containerdisk
        containerDisk:
          image: quay.io/kubevirt/cirros-container-disk-demo
"""
