"""Real etcd members on loopback for tests and benchmarks: start, kill -9, restart, ask who leads.

Each member gets free ports and its own data directory; ``EtcdCluster.stop`` kills every process it
started. Members talk plain HTTP on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EtcdCluster", "EtcdTls", "free_port", "make_tls"]


@dataclass(frozen=True)
class EtcdTls:
    """PEM files: a CA, the members' serving certificate (127.0.0.1) and a client certificate."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls(directory: Path) -> EtcdTls:
    """A fresh CA and the two certificates it signs, written under ``directory``."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    directory.mkdir(parents=True, exist_ok=True)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("etcd-test-ca"))
        .issuer_name(name("etcd-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = EtcdTls(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for cert_path, key_path, usage in (
        (files.server_cert, files.server_key, ExtendedKeyUsageOID.SERVER_AUTH),
        (files.client_cert, files.client_key, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name("vmplane"))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_key(key_path, key)
    return files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class EtcdCluster:
    """``size`` members in ``root`` (a temporary directory by default, removed by ``stop``)."""

    size: int = 1
    root: Path | None = None
    in_memory: bool = False  # data directories on /dev/shm: fast fsyncs, for the contract suites
    tls: EtcdTls | None = None  # clients must then present a certificate the CA signed
    members: list[_Member] = field(default_factory=list)
    _owned_root: bool = False

    def start(self, *, timeout: float = 20.0) -> EtcdCluster:
        if self.root is None:
            shm = "/dev/shm" if self.in_memory and os.path.isdir("/dev/shm") else None
            self.root = Path(tempfile.mkdtemp(prefix="vmplane-etcd-", dir=shm))
            self._owned_root = True
        self.root.mkdir(parents=True, exist_ok=True)
        for index in range(self.size):
            name = f"m{index}"
            self.members.append(
                _Member(name, free_port(), free_port(), self.root / name, self.root / f"{name}.log")
            )
        for member in self.members:
            self._launch(member, state="new")
        self.wait_healthy(timeout=timeout)
        return self

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(member.endpoint for member in self.members)

    def url(self) -> str:
        return "etcd://" + ",".join(self.endpoints)

    def _launch(self, member: _Member, *, state: str) -> None:
        initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
        scheme = "https" if self.tls is not None else "http"
        argv = [
            "etcd",
            f"--name={member.name}",
            f"--data-dir={member.data_dir}",
            f"--listen-client-urls={scheme}://127.0.0.1:{member.client_port}",
            f"--advertise-client-urls={scheme}://127.0.0.1:{member.client_port}",
            f"--listen-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{member.peer_port}",
            f"--initial-cluster={initial}",
            f"--initial-cluster-state={state}",
            "--initial-cluster-token=vmplane-test",
            # Quicker elections than the 1 s default, so failover tests stay short.
            "--heartbeat-interval=50",
            "--election-timeout=500",
            # The API takes objects up to 3 MiB; etcd's default request limit is 1.5 MiB.
            "--max-request-bytes=4194304",
        ]
        if self.tls is not None:
            argv += [
                f"--cert-file={self.tls.server_cert}",
                f"--key-file={self.tls.server_key}",
                f"--trusted-ca-file={self.tls.ca}",
                "--client-cert-auth",
            ]
        with member.log.open("ab") as log:
            member.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def etcdctl(self, *args: str, endpoints: tuple[str, ...] | None = None, timeout: float = 10.0) -> str:
        env = {**os.environ, "ETCDCTL_API": "3"}
        command = ["etcdctl", f"--endpoints={','.join(endpoints or self.endpoints)}"]
        if self.tls is not None:
            command += [
                f"--cacert={self.tls.ca}",
                f"--cert={self.tls.client_cert}",
                f"--key={self.tls.client_key}",
            ]
        command += args
        done = subprocess.run(command, env=env, capture_output=True, timeout=timeout, check=True)
        return done.stdout.decode()

    def wait_healthy(self, *, timeout: float = 20.0, members: list[_Member] | None = None) -> None:
        give_up = time.monotonic() + timeout
        for member in members or self.members:
            while True:
                try:
                    self.etcdctl("endpoint", "health", endpoints=(member.endpoint,), timeout=5)
                    break
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as err:
                    if member.process is not None and member.process.poll() is not None:
                        raise RuntimeError(
                            f"etcd {member.name} exited: {member.log.read_text()[-2000:]}"
                        ) from err
                    if time.monotonic() > give_up:
                        raise RuntimeError(
                            f"etcd {member.name} not healthy: {member.log.read_text()[-2000:]}"
                        ) from err
                    time.sleep(0.1)

    def leader(self) -> _Member:
        import json

        for member in self.members:
            if member.process is None or member.process.poll() is not None:
                continue
            try:
                out = self.etcdctl(
                    "endpoint", "status", "-w", "json", endpoints=(member.endpoint,), timeout=5
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                continue
            [status] = json.loads(out)
            if status["Status"]["leader"] == status["Status"]["header"]["member_id"]:
                return member
        raise RuntimeError("no etcd leader")

    def kill(self, member: _Member) -> None:
        """kill -9, as a crash."""
        if member.process is not None and member.process.poll() is None:
            os.killpg(member.process.pid, signal.SIGKILL)
            member.process.wait(10)

    def stop_member(self, member: _Member) -> None:
        if member.process is not None and member.process.poll() is None:
            member.process.terminate()
            member.process.wait(10)

    def restart(self, member: _Member, *, timeout: float = 20.0) -> None:
        self._launch(member, state="existing")
        self.wait_healthy(timeout=timeout, members=[member])

    def stop(self) -> None:
        for member in self.members:
            self.kill(member)
        if self._owned_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
