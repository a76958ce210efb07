"""The in-process door into the API: the aiohttp application served on a private Unix socket.

Components that run inside the API server's process (``vmplane serve``'s controllers and node agent,
the API server's own admission caches) reach the API through this door rather than the store, so
their requests take the path every HTTP request takes: authentication, authorization (a controller
is ``system:vmplane:controllers``, a node agent ``system:node:NAME``), admission, the write path and
the watch cache. Each identity gets a random bearer token that lives only in this process's memory;
the socket sits in a fresh 0700 directory, so no other user can even connect.
"""

from __future__ import annotations

import hmac
import secrets
import shutil
import tempfile
from pathlib import Path

from aiohttp import web

from vmplane.apiserver.authz import User
from vmplane.apiserver.tokens import Authenticate
from vmplane.client.config import in_process_client
from vmplane.client.rest import RestObjectClient

__all__ = ["InProcessDoor"]


class InProcessDoor:
    """Mints in-memory identities and opens clients that use them over a private socket."""

    def __init__(self) -> None:
        self._tokens: dict[str, User] = {}
        # Short and private: a Unix socket path must fit in 108 bytes.
        self._dir = Path(tempfile.mkdtemp(prefix="vmplane-"))
        self.socket_path = self._dir / "api.sock"
        self._site: web.UnixSite | None = None

    def authenticate(self, fallback: Authenticate) -> Authenticate:
        """An authenticator admitting this door's tokens first, then whatever ``fallback`` admits."""

        def authenticate(authorization: str | None) -> User | None:
            scheme, _, presented = (authorization or "").partition(" ")
            if scheme.lower() == "bearer":
                for token, user in self._tokens.items():
                    if hmac.compare_digest(token.encode(), presented.strip().encode()):
                        return user
            return fallback(authorization)

        return authenticate

    async def open(self, runner: web.AppRunner) -> None:
        """Serve ``runner``'s application on the socket."""
        self._site = web.UnixSite(runner, str(self.socket_path))
        await self._site.start()

    def mint(self, user: User) -> str:
        """A bearer token for ``user``, valid (through any door of this server) until the process ends."""
        token = secrets.token_urlsafe(32)
        self._tokens[token] = user
        return token

    def client(self, user: User) -> RestObjectClient:
        """A client acting as ``user`` through the socket."""
        return in_process_client(self.socket_path, self.mint(user))

    async def close(self) -> None:
        if self._site is not None:
            await self._site.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
