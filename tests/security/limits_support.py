"""Shared by the ``test_limits_*`` suites: ``vmplane serve`` on 127.0.0.1 with chosen limits, and raw
HTTP/1.1 over TLS for what a well-behaved client library cannot send (slow, malformed, never read).

Holds no tests.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from test_api_support import start_server, terminate

READY_TIMEOUT = 30.0

VM_NAMESPACE_PATH = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


def vm(name: str, **metadata: Any) -> dict[str, Any]:
    """A minimal VirtualMachine that admission accepts."""
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, **metadata},
        "spec": {
            "runStrategy": "Halted",
            "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}}},
        },
    }


@dataclass
class LimitsServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    url: str
    host: str
    port: int
    token: str
    ca_file: Path

    def http(self) -> urllib3.PoolManager:
        return urllib3.PoolManager(ca_certs=str(self.ca_file), cert_reqs="CERT_REQUIRED", retries=False)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict[str, Any], urllib3.HTTPHeaderDict]:
        """One request with the admin token; status, decoded JSON body ({} if not JSON), headers."""
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        if data is not None:
            all_headers["Content-Type"] = content_type
        response = self.http().request(
            method, self.url + path, body=data, headers=all_headers, timeout=timeout
        )
        try:
            decoded = json.loads(response.data) if response.data else {}
        except ValueError:
            decoded = {}
        return response.status, decoded, response.headers

    def tls_socket(self, timeout: float = 10.0) -> ssl.SSLSocket:
        """A TLS connection to the server, handshake done."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        raw = socket.create_connection((self.host, self.port), timeout=timeout)
        return context.wrap_socket(raw, server_hostname=self.host)

    def raw(self, request: bytes, timeout: float = 10.0) -> bytes:
        """Send ``request`` as is on a fresh connection; everything the server answers until it closes."""
        with self.tls_socket(timeout) as sock:
            sock.sendall(request)
            return read_until_closed(sock, timeout)

    def settled(self, path: str, timeout: float = 15.0) -> dict[str, Any]:
        """The object at ``path`` once its controller has stopped changing it (same resourceVersion
        over half a second)."""
        deadline = time.monotonic() + timeout
        _, previous, _ = self.request("GET", path)
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status, current, _ = self.request("GET", path)
            assert status == 200, current
            if current["metadata"]["resourceVersion"] == previous["metadata"]["resourceVersion"]:
                return current
            previous = current
        raise TimeoutError(f"{path} kept changing")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """The server process's resident set size."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except (ConnectionError, ssl.SSLError):
            break
        if not chunk:
            break
        received += chunk
    return received


def start(tmp: Path, *extra: str, listen: str = "127.0.0.1:0") -> LimitsServer:
    """``vmplane serve --hypervisor simulated`` with ``extra`` arguments, ready to serve."""
    server = start_server(tmp, *extra, listen=listen)
    host, port = server.url.removeprefix("https://").rsplit(":", 1)
    return LimitsServer(
        process=server.process,
        data_dir=server.data_dir,
        log_path=server.log,
        url=server.url,
        host=host,
        port=int(port),
        token=server.token,
        ca_file=server.ca_file,
    )


@contextmanager
def serving(tmp: Path, *extra: str, listen: str = "127.0.0.1:0") -> Iterator[LimitsServer]:
    server = start(tmp, *extra, listen=listen)
    try:
        yield server
    finally:
        assert terminate(server.process) == 0, "vmplane serve did not shut down cleanly"


def nested_json(depth: int) -> str:
    """A JSON object ``{"a":{"a":...}}`` nested ``depth`` objects deep."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def nested_yaml(depth: int) -> str:
    """A YAML flow mapping nested ``depth`` deep."""
    return "{a: " * (depth - 1) + "{}" + "}" * (depth - 1)
