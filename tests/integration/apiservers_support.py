"""Separate ``vmplane apiserver`` processes over one store, for the multi-API-server tests: start and
stop them, point a kubeconfig at another, and watch one over raw HTTPS."""

from __future__ import annotations

import contextlib
import json
import ssl
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from etcd_support import free_port

from vmplane.cli.dev_cluster import read_ready_line
from vmplane.client.config import read_kubeconfig

VMPLANE = (sys.executable, "-m", "vmplane.cli.main")
VMS = "/apis/kubevirt.io/v1/namespaces/default/virtualmachines"


@dataclass
class ApiServerProcess:
    process: subprocess.Popen[bytes]
    data_dir: Path
    port: int
    kubeconfig: Path

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def start_apiserver(root: Path, name: str, store: str) -> ApiServerProcess:
    data_dir, port = root / name, free_port()
    with (root / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            [
                *VMPLANE,
                "apiserver",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{port}",
                "--store",
                store,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
    line = read_ready_line(process)
    return ApiServerProcess(process, data_dir, port, Path(line.split("kubeconfig:", 1)[1].strip()))


def stop_apiserver(server: ApiServerProcess) -> None:
    if server.process.poll() is None:
        server.process.terminate()
    server.process.wait(timeout=15)
    if server.process.stdout is not None:
        server.process.stdout.close()


def pointed_at(kubeconfig: Path, server: ApiServerProcess, into: Path) -> Path:
    """``kubeconfig`` with only its ``server`` URL changed to ``server``'s."""
    original = read_kubeconfig(kubeconfig).server
    into.write_text(kubeconfig.read_text().replace(original, server.server))
    into.chmod(0o600)
    return into


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
    )


class RawWatch:
    """``?watch=1`` on one API server, its events gathered by a thread until it is idle ``idle`` s.

    The end is the read timeout, not a close from another thread (which would block on the read):
    a duplicate or late event would arrive within the idle time and be counted.
    """

    def __init__(self, kubeconfig: Path, server: ApiServerProcess, since: str, *, idle: float = 8.0) -> None:
        config = read_kubeconfig(kubeconfig)
        assert config.ca_pem is not None
        context = ssl.create_default_context(cadata=config.ca_pem.decode())
        request = urllib.request.Request(
            f"{server.server}{VMS}?watch=1&resourceVersion={since}",
            headers={"Authorization": f"Bearer {config.token}"},
        )
        self.response = urllib.request.urlopen(request, context=context, timeout=idle)
        self.events: list[tuple[str, str, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with contextlib.suppress(TimeoutError), self.response:
            for line in self.response:
                event = json.loads(line)
                metadata = event["object"]["metadata"]
                self.events.append((event["type"], metadata["name"], metadata["resourceVersion"]))

    def finish(self) -> list[tuple[str, str, str]]:
        """Every event, once the stream has been idle for ``idle`` seconds."""
        self._reader.join(timeout=120)
        assert not self._reader.is_alive(), "the watch never went idle"
        return self.events
