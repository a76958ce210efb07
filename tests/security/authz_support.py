"""Shared by the authorization suites: ``vmplane serve --hypervisor simulated`` and tokens made with
``vmplane token create``, driven through kubectl and plain HTTPS (this module holds no tests).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3
import yaml

READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class Identity:
    """A token and the kubeconfig ``vmplane token create`` printed for it."""

    kubeconfig: Path
    token: str


@dataclass
class AuthzServer:
    process: subprocess.Popen[bytes]
    data_dir: Path
    home: Path
    url: str
    ca_file: Path
    admin: Identity

    def vmplane(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "vmplane.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "HOME": str(self.home)},
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vmplane {' '.join(args)} failed: {result.stderr}")
        return result

    def identity(self, role: str, node: str | None = None) -> Identity:
        """A new token of ``role``, with its kubeconfig written beside the data directory."""
        args = ["token", "create", "--role", role, "--data-dir", str(self.data_dir)]
        if node is not None:
            args += ["--node", node]
        text = self.vmplane(*args).stdout
        config = yaml.safe_load(text)
        path = self.home / f"{role}-{node or 'x'}-{time.monotonic_ns()}.kubeconfig"
        path.write_text(text)
        path.chmod(0o600)
        return Identity(kubeconfig=path, token=config["users"][0]["user"]["token"])

    def kubectl(
        self, who: Identity, *args: str, stdin: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECONFIG": str(who.kubeconfig), "HOME": str(self.home)},
            check=False,
        )

    def request(
        self,
        who: Identity | str,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        content_type: str = "application/merge-patch+json",
    ) -> tuple[int, dict[str, Any]]:
        """One HTTPS request as ``who`` (an identity or a raw token); status and decoded JSON body."""
        token = who if isinstance(who, str) else who.token
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        http = urllib3.PoolManager(ca_certs=str(self.ca_file), cert_reqs="CERT_REQUIRED", retries=False)
        response = http.request(method, self.url + path, body=data, headers=headers, timeout=30)
        try:
            decoded = json.loads(response.data) if response.data else {}
        except ValueError:
            decoded = {}
        return response.status, decoded


def wait_until(predicate: Callable[[], bool], *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` (each call is one API round trip) until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not hold within {timeout:g}s")
        time.sleep(0.1)


def _ready_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    assert process.stdout is not None
    buffer = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"vmplane serve exited with {process.returncode}")
        readable, _, _ = select.select([process.stdout], [], [], 0.2)
        if readable:
            buffer += os.read(process.stdout.fileno(), 4096)
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
    raise TimeoutError("vmplane serve did not report readiness")


def _start(tmp: Path) -> AuthzServer:
    data_dir, home = tmp / "data", tmp / "home"
    home.mkdir(parents=True)
    with (tmp / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "vmplane.cli.main", "serve", "--data-dir", str(data_dir)),
                *("--listen", "127.0.0.1:0", "--hypervisor", "simulated", "--log-level", "debug"),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    try:
        line = _ready_line(process, time.monotonic() + READY_TIMEOUT)
    except BaseException:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        raise
    kubeconfig = Path(line.split("kubeconfig:", 1)[1].strip())
    config = yaml.safe_load(kubeconfig.read_text())
    return AuthzServer(
        process=process,
        data_dir=data_dir,
        home=home,
        url=config["clusters"][0]["cluster"]["server"],
        ca_file=data_dir / "tls" / "ca.crt",
        admin=Identity(kubeconfig=kubeconfig, token=config["users"][0]["user"]["token"]),
    )


def _stop(server: AuthzServer) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
        raise
    finally:
        if server.process.stdout is not None:
            server.process.stdout.close()


@pytest.fixture(scope="module")
def authz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzServer]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    server = _start(tmp_path_factory.mktemp("authz"))
    try:
        yield server
    finally:
        assert _stop(server) == 0, "vmplane serve did not shut down cleanly"
