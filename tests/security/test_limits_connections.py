"""Issue 8, Deliver 4 (connections): header read timeout (slowloris), idle keep-alive timeout, a
cap on open connections, and ``--listen`` logging the address really bound.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator

import pytest
from limits_support import LimitsServer, read_until_closed, serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LimitsServer]:
    # The default header timeout (10 s), a short idle timeout and a small cap to keep the tests quick.
    with serving(
        tmp_path_factory.mktemp("connections"), "--idle-timeout", "2", "--max-connections", "6"
    ) as running:
        yield running


def _open(sock: socket.socket) -> bool:
    """True while the server has not closed ``sock`` (nothing to read, no EOF)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True
    except (ConnectionError, ssl.SSLError, OSError):
        return False


def test_a_client_sending_one_byte_every_2_s_is_disconnected_after_10_s(server: LimitsServer) -> None:
    request = f"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
    with server.tls_socket() as sock:
        started = time.monotonic()
        closed_after = None
        for byte in request.encode():
            if not _open(sock):
                closed_after = time.monotonic() - started
                break
            try:
                sock.sendall(bytes([byte]))
            except (ConnectionError, ssl.SSLError, OSError):
                closed_after = time.monotonic() - started
                break
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline and _open(sock):
                time.sleep(0.1)
            if time.monotonic() - started > 20:
                break
    assert closed_after is not None, "a slowloris client held its connection for 20 s"
    assert 9 <= closed_after <= 13, f"closed after {closed_after:.1f} s"


def test_a_prompt_request_is_served_within_the_header_timeout(server: LimitsServer) -> None:
    status, body, _ = server.request("GET", "/api/v1/namespaces")
    assert status == 200, body


def test_an_idle_keep_alive_connection_is_closed(server: LimitsServer) -> None:
    with server.tls_socket() as sock:
        sock.sendall(
            f"GET /version HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n\r\n".encode()
        )
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        read_until_closed(sock, timeout=10)
        idle = time.monotonic() - started
    assert idle < 5, f"an idle keep-alive connection stayed open {idle:.1f} s (idle timeout 2 s)"


def test_connections_past_the_cap_get_429_as_a_status(server: LimitsServer) -> None:
    held = []
    try:
        for _ in range(6):
            sock = server.tls_socket()
            sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")  # headers unfinished: the connection stays
            held.append(sock)
        time.sleep(0.2)
        with server.tls_socket() as extra:
            answer = read_until_closed(extra, timeout=5)
    finally:
        for sock in held:
            sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 429 Too Many Requests"), answer[:200]
    assert b"Retry-After: 1" in head
    status = json.loads(body)
    assert status["kind"] == "Status"
    assert status["reason"] == "TooManyRequests"
    assert status["code"] == 429


def test_connections_are_accepted_again_once_others_close(server: LimitsServer) -> None:
    deadline = time.monotonic() + 5
    while True:
        status, body, _ = server.request("GET", "/version")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200, body


def test_listen_on_all_interfaces_logs_the_real_address_and_warns(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with serving(tmp_path_factory.mktemp("any"), listen="0.0.0.0:0") as running:
        log = running.log()
        port = running.port
    assert f"serving on https://0.0.0.0:{port}" in log
    assert "serving on https://127.0.0.1" not in log
    assert "non-loopback address" in log
    assert "TLS and the API tokens are all that protect it" in log


def test_listen_on_loopback_logs_loopback_and_does_not_warn(server: LimitsServer) -> None:
    log = server.log()
    assert f"serving on https://127.0.0.1:{server.port}" in log
    assert "non-loopback" not in log
