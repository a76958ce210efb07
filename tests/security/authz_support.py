"""Shared by the authorization suites: ``vmplane serve --hypervisor simulated`` and tokens made with
``vmplane token create``, driven through kubectl and plain HTTPS (this module holds no tests).
"""

from __future__ import annotations

import json
import os
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
from test_api_support import start_server, terminate

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


def _start(tmp: Path) -> AuthzServer:
    server = start_server(tmp)
    return AuthzServer(
        process=server.process,
        data_dir=server.data_dir,
        home=server.home,
        url=server.url,
        ca_file=server.ca_file,
        admin=Identity(kubeconfig=server.kubeconfig, token=server.token),
    )


@pytest.fixture(scope="module")
def authz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzServer]:
    server = _start(tmp_path_factory.mktemp("authz"))
    try:
        yield server
    finally:
        assert terminate(server.process) == 0, "vmplane serve did not shut down cleanly"
