"""``/metrics`` of a process that is a client of the API (``vmplane controller``, ``vmplane agent``).

As kube-controller-manager's secure port: HTTPS with a self-signed certificate made at start, and a
bearer token the API server vouches for (a ``SelfSubjectReview`` sent with the caller's token, as
the agents' console servers check the API server's proxy, ``node_console.DelegatedAuthenticator``).
Any identity the API server authenticates may read it, as on the API server itself (``/metrics`` is
a non-resource path every identity may get); without one it is ``401``. So the process needs no
token store of its own, and a token revoked in the API stops reading within ``REVIEW_TTL``.
"""

from __future__ import annotations

import socket
from pathlib import Path

from aiohttp import web

from vmplane.apiserver import status as st
from vmplane.apiserver.node_console import DelegatedAuthenticator
from vmplane.apiserver.security import ensure_self_signed, server_ssl_context
from vmplane.client.config import Kubeconfig
from vmplane.metrics import CONTENT_TYPE, Metrics

__all__ = ["MetricsServer"]


def _unauthorized() -> web.Response:
    return web.json_response(st.unauthorized().status, status=401)


class MetricsServer:
    """``GET /metrics`` over HTTPS on ``host:port`` (port 0: a free one), for tokens the API accepts."""

    def __init__(
        self, metrics: Metrics, *, host: str, port: int, cert_dir: Path, kubeconfig: Kubeconfig
    ) -> None:
        self._metrics = metrics
        self._host, self._port = host, port
        self._cert_dir = cert_dir
        self._allowed = DelegatedAuthenticator(
            api_server=kubeconfig.server, ca_pem=kubeconfig.ca_pem, user=None
        )
        self._runner: web.AppRunner | None = None

    async def _scrape(self, request: web.Request) -> web.Response:
        if not await self._allowed(request.headers.get("Authorization")):
            return _unauthorized()
        return web.Response(body=self._metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    async def start(self) -> str:
        """Bind, make the certificate and serve; the URL to scrape."""
        sock = socket.create_server((self._host, self._port))
        port = int(sock.getsockname()[1])
        tls = ensure_self_signed(self._cert_dir, self._host)
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock, ssl_context=server_ssl_context(tls)).start()
        shown = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{shown}:{port}/metrics"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
