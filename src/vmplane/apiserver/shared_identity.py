"""Identities every API server over one store shares: the token hashes and the serving CA.

Several API servers over one etcd cluster must admit the same tokens and present certificates a
kubeconfig's CA trusts, so that a kubeconfig made by one works against another with only its
``server`` URL changed. Both live in the store as vmplane-internal resources that no API route
serves (the registry does not know them):

- ``vmplane-tokens`` (cluster-scoped, one object per token, named by its id): role, node, creation
  time and the SHA-256 of the token, never the token. Each API server publishes the records of its
  data directory's ``tokens.json`` (its seeded admin token among them) on start and keeps a watch
  on the resource, so a token made on one server is admitted by every other within one watch event.
- ``vmplane-serving-ca/ca``: the CA certificate and key. The first API server to start creates it
  (a create, so of two starting at once exactly one wins and the other reads the winner's); each
  server then issues its own serving certificate from it for its own listen address.

Why the CA key in the store, not shared ``--tls-cert/--tls-key`` files: it needs no files copied
between hosts, and whoever can read the store can already rewrite every object and token in it
(as with Kubernetes, etcd access is cluster-admin), so the key adds nothing an attacker with etcd
access lacks. It is not encrypted at rest for that reason; protect etcd with client TLS
(``--etcd-certfile``) and keep its data directory private. Operators who want their own PKI still
pass ``--tls-cert/--tls-key``, which bypasses this.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
from pathlib import Path

from vmplane.apiserver.authz import User
from vmplane.apiserver.security import TlsFiles, issue_server_cert, new_ca
from vmplane.apiserver.tokens import TokenError, TokenRecord, digest_of, list_tokens, presented_token
from vmplane.store.base import (
    AlreadyExistsError,
    ExpiredError,
    JsonObject,
    NotFoundError,
    Store,
    StoreError,
)

__all__ = ["CA_RESOURCE", "TOKENS_RESOURCE", "SharedTokens", "mirror_file_tokens", "shared_tls"]

TOKENS_RESOURCE = "vmplane-tokens"
CA_RESOURCE = "vmplane-serving-ca"
_CA_NAME = "ca"
_RETRY = 1.0
log = logging.getLogger(__name__)


def _token_object(record: TokenRecord) -> JsonObject:
    return {
        "apiVersion": "vmplane.io/v1",
        "kind": "APIToken",
        "metadata": {"name": record.id},
        "role": record.role,
        "node": record.node,
        "created": record.created,
        "sha256": record.sha256,
    }


def _record(obj: JsonObject) -> TokenRecord | None:
    """The record an object holds, or None for one that is not a token record (never admitted)."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return None
    try:
        node = obj.get("node")
        return TokenRecord(
            id=str(metadata["name"]),
            role=str(obj["role"]),
            node=str(node) if node is not None else None,
            created=str(obj["created"]),
            sha256=str(obj["sha256"]),
        )
    except KeyError:
        return None


async def _publish(store: Store, records: list[TokenRecord]) -> None:
    for record in records:
        with contextlib.suppress(AlreadyExistsError):
            await store.create(TOKENS_RESOURCE, _token_object(record))


async def mirror_file_tokens(store: Store, data_dir: Path, *, interval: float = 1.0) -> None:
    """Publish the data directory's token records to the store, and follow ``vmplane token`` runs.

    On start every record of ``tokens.json`` is put in the store (those there already are kept);
    then, every ``interval``, a record new in the file is published and one gone from it (revoked
    on this host) is deleted from the store, so the revoke reaches every API server too.
    """
    published: set[str] = set()
    while True:
        try:
            records = list_tokens(data_dir)
            await _publish(store, [r for r in records if r.id not in published])
            current = {r.id for r in records}
            for gone in published - current:
                with contextlib.suppress(NotFoundError):
                    await store.delete(TOKENS_RESOURCE, "", gone)
            published = current
        except (TokenError, StoreError) as err:
            log.warning("publishing this host's tokens failed (%s); retrying", err)
        await asyncio.sleep(interval)


class SharedTokens:
    """The token records in the store, kept current by a watch; ``authenticate`` is synchronous."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._records: dict[str, TokenRecord] = {}
        self._synced = asyncio.Event()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    async def run(self) -> None:
        """List, then watch from the list's revision; re-list after a compaction or a store error."""
        while True:
            try:
                listed = await self._store.list(TOKENS_RESOURCE, "")
                records = {r.id: r for o in listed.items if (r := _record(o)) is not None}
                self._records = records
                self._synced.set()
                async for event in self._store.watch(TOKENS_RESOURCE, "", since=listed.resource_version):
                    record = _record(event.object)
                    if record is None:
                        continue
                    if event.type == "DELETED":
                        self._records.pop(record.id, None)
                    else:
                        self._records[record.id] = record
            except ExpiredError:
                continue
            except StoreError as err:
                log.warning("token watch failed (%s); retrying", err)
            await asyncio.sleep(_RETRY)

    def authenticate(self, authorization: str | None) -> User | None:
        presented = presented_token(authorization)
        if presented is None:
            return None
        digest = digest_of(presented).encode()
        found: TokenRecord | None = None
        for record in list(self._records.values()):  # every record compared, in constant time each
            if hmac.compare_digest(digest, record.sha256.encode()):
                found = record
        return found.user if found is not None else None


async def shared_tls(store: Store, data_dir: Path, host: str) -> TlsFiles:
    """This server's certificate for ``host``, issued from the store's serving CA (made if absent)."""
    try:
        held = await store.get(CA_RESOURCE, "", _CA_NAME)
    except NotFoundError:
        cert_pem, key_pem = new_ca()
        made: JsonObject = {
            "apiVersion": "vmplane.io/v1",
            "kind": "ServingCA",
            "metadata": {"name": _CA_NAME},
            "certificate": base64.b64encode(cert_pem).decode(),
            "key": base64.b64encode(key_pem).decode(),
        }
        try:
            held = await store.create(CA_RESOURCE, made)
        except AlreadyExistsError:  # another API server made it first: use that one
            held = await store.get(CA_RESOURCE, "", _CA_NAME)
    cert_pem = base64.b64decode(str(held["certificate"]))
    key_pem = base64.b64decode(str(held["key"]))
    return issue_server_cert(data_dir, host, cert_pem, key_pem)
