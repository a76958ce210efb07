"""API tokens per identity, stored hashed in ``<data-dir>/tokens.json`` (mode 0600).

The file holds, per token, a short id, the role, the node for a node token, when it was made and
the SHA-256 of the token; never the token, which is printed once by ``vmplane token create``. The
file is replaced atomically (a 0600 temporary file renamed over it, under an ``flock``), so a running
server that re-reads it on a change of its stat (``TokenAuthenticator``) sees the old set or the new
one, and a create or revoke takes effect within one request. The first start seeds it with the
admin token of ``<data-dir>/token``, which existing kubeconfigs hold (once: see ``seed_admin_token``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from vmplane.api.timestamps import timestamp
from vmplane.apiserver.authz import Role, User, user_for

__all__ = [
    "TOKENS_NAME",
    "Authenticate",
    "TokenAuthenticator",
    "TokenError",
    "TokenRecord",
    "create_token",
    "digest_of",
    "either",
    "list_tokens",
    "presented_token",
    "revoke_token",
    "seed_admin_token",
    "single_token",
]

TOKENS_NAME = "tokens.json"
#: An ``Authorization`` header -> the user it authenticates, or None.
Authenticate = Callable[[str | None], User | None]
_VERSION = 1


class TokenError(Exception):
    """A token operation that cannot be done (unknown id, unreadable file)."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    role: str
    node: str | None
    created: str
    sha256: str

    @property
    def user(self) -> User:
        return user_for(Role(self.role), node=self.node, uid=self.id)


def digest_of(token: str) -> str:
    """What is kept of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return timestamp(datetime.now(UTC))


def _parse(text: str) -> list[TokenRecord]:
    try:
        data = json.loads(text)
        return [
            TokenRecord(
                id=str(t["id"]),
                role=Role(t["role"]).value,
                node=t.get("node"),
                created=str(t["created"]),
                sha256=str(t["sha256"]),
            )
            for t in data["tokens"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise TokenError(f"{TOKENS_NAME} is not a vmplane token file: {err}") from err


def _read(path: Path) -> list[TokenRecord]:
    try:
        return _parse(path.read_text())
    except FileNotFoundError:
        return []


def _write(path: Path, records: Sequence[TokenRecord]) -> None:
    body = json.dumps({"version": _VERSION, "tokens": [asdict(r) for r in records]}, indent=2) + "\n"
    fd, temp = tempfile.mkstemp(prefix=".tokens.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    """Serialise read-modify-write of the token file between CLI runs and a starting server."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(data_dir / ".tokens.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield data_dir / TOKENS_NAME
    finally:
        os.close(fd)


def _new_id(taken: set[str]) -> str:
    while (candidate := secrets.token_hex(4)) in taken:
        pass
    return candidate


def seed_admin_token(data_dir: Path, token: str) -> None:
    """Admit ``token`` (``<data-dir>/token``) as admin, once: ``.admin-seeded`` remembers its hash, so
    a revoke of it sticks across restarts, while a token file made anew (or a token file created by
    ``vmplane token create`` before the first start) still gets its admin."""
    marker = data_dir / ".admin-seeded"
    digest = digest_of(token)
    with _locked(data_dir) as path:
        if marker.exists() and marker.read_text().strip() == digest:
            return
        records = _read(path)
        if all(r.sha256 != digest for r in records):
            admin = TokenRecord(
                id=_new_id({r.id for r in records}),
                role=Role.ADMIN.value,
                node=None,
                created=_now(),
                sha256=digest,
            )
            _write(path, [*records, admin])
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(digest + "\n")


def create_token(data_dir: Path, role: Role, *, node: str | None = None) -> tuple[TokenRecord, str]:
    """A new token for ``role`` (``node`` for a node token); returns its record and the token itself."""
    user_for(role, node=node)  # refuses a node token without a node
    token = secrets.token_urlsafe(32)
    with _locked(data_dir) as path:
        records = _read(path)
        record = TokenRecord(
            id=_new_id({r.id for r in records}),
            role=role.value,
            node=node if role is Role.NODE else None,
            created=_now(),
            sha256=digest_of(token),
        )
        _write(path, [*records, record])
    return record, token


def list_tokens(data_dir: Path) -> list[TokenRecord]:
    return _read(data_dir / TOKENS_NAME)


def revoke_token(data_dir: Path, token_id: str) -> TokenRecord:
    with _locked(data_dir) as path:
        records = _read(path)
        kept = [r for r in records if r.id != token_id]
        if len(kept) == len(records):
            raise TokenError(f'no token with id "{token_id}"')
        _write(path, kept)
    return next(r for r in records if r.id == token_id)


class TokenAuthenticator:
    """Bearer token -> ``User``, from ``tokens.json``, re-read whenever its stat changes."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / TOKENS_NAME
        self._stamp: tuple[int, int, int] | None = None
        self._records: list[TokenRecord] = []

    def _refresh(self) -> None:
        try:
            info = os.stat(self._path)
        except FileNotFoundError:
            self._stamp, self._records = None, []
            return
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp != self._stamp:
            # A file being replaced is never half-written (rename); a bad file keeps no one in.
            try:
                self._records = _read(self._path)
            except TokenError:
                self._records = []
            self._stamp = stamp

    def authenticate(self, authorization: str | None) -> User | None:
        """The identity of an ``Authorization: Bearer <token>`` header, or None."""
        presented = presented_token(authorization)
        if presented is None:
            return None
        self._refresh()
        digest = digest_of(presented).encode()
        found: TokenRecord | None = None
        for record in self._records:  # every record compared, in constant time each
            if hmac.compare_digest(digest, record.sha256.encode()):
                found = record
        return found.user if found is not None else None


def presented_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        return None
    return presented.strip()


def single_token(token: str) -> Authenticate:
    """Admit one token, as admin (embedded servers and tests)."""
    admin = user_for(Role.ADMIN)
    expected = digest_of(token).encode()

    def authenticate(authorization: str | None) -> User | None:
        presented = presented_token(authorization)
        if presented is None:
            return None
        return admin if hmac.compare_digest(digest_of(presented).encode(), expected) else None

    return authenticate


def either(first: Authenticate, second: Authenticate) -> Authenticate:
    """Admit whom ``first`` admits, else whom ``second`` does."""

    def authenticate(authorization: str | None) -> User | None:
        return first(authorization) or second(authorization)

    return authenticate
