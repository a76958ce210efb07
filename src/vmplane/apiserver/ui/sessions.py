"""Console sessions: a signed-in token kept server-side behind an HttpOnly cookie, plus a CSRF token.

The browser never holds the API token after sign-in: the cookie (``HttpOnly; Secure;
SameSite=Strict``) names a random session id, and the server keeps the token itself, so every API
request the console makes is authenticated afresh with it (a revoked token ends the session at the
next request). Writes must also carry the session's CSRF token in ``X-CSRF-Token``, which only the
console's own script can read (from ``GET /ui/session``); SameSite=Strict alone already keeps
cross-site requests from carrying the cookie, the token covers same-site origins as well.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from vmplane.apiserver import status as st

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "Session",
    "SessionStore",
    "set_session_cookie",
]

COOKIE = "vmplane_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: A session lasts this long after sign-in (seconds); the console signs in again after it.
DEFAULT_LIFETIME = 8 * 3600.0
#: At most this many sessions are kept; the oldest goes first (sign-in needs a valid token anyway).
DEFAULT_CAPACITY = 1024


@dataclass(frozen=True, slots=True)
class Session:
    """``authorization`` is the ``Authorization`` header value the session stands for."""

    id: str
    csrf: str
    authorization: str
    expires: float


def set_session_cookie(response: web.StreamResponse, session_id: str, *, max_age: int) -> None:
    """The session cookie: not readable by scripts, sent only over TLS and only by this site's pages."""
    response.set_cookie(
        COOKIE, session_id, httponly=True, secure=True, samesite="Strict", path="/", max_age=max_age
    )


class SessionStore:
    """Sessions in memory: a restart signs everyone out, which is what a restart of the API should do."""

    def __init__(
        self,
        *,
        lifetime: float = DEFAULT_LIFETIME,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lifetime = lifetime
        self._capacity = capacity
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, authorization: str) -> Session:
        """A new session for an ``Authorization`` value the caller has already authenticated."""
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            authorization=authorization,
            expires=self._clock() + self.lifetime,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self._capacity:
            self._sessions.popitem(last=False)
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session of that id, or None (unknown or expired; expired ones are dropped)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[session_id]
            return None
        return session

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def authorization(
        self, method: str, cookies: Mapping[str, str], headers: Mapping[str, str]
    ) -> str | None:
        """The ``Authorization`` value a request carries: its header, else its session's.

        A write through a session without the session's CSRF token is ``403``.
        """
        header = headers.get("Authorization")
        if header is not None:
            return header
        session = self.get(cookies.get(COOKIE))
        if session is None:
            return None
        if method.upper() not in SAFE_METHODS:
            presented = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
                raise st.forbidden("the console's CSRF token is missing or wrong: reload the page")
        return session.authorization
