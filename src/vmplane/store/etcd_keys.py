"""Where EtcdStore keeps things in etcd's flat keyspace, and how a list page is continued: pure.

One key per object, ``<prefix>/<resource>/<namespace>/<name>`` (the prefix is ``/registry`` by
default, as kube-apiserver's ``--etcd-prefix``; a cluster-scoped object has the namespace ``""``, so
its key holds ``//``, which keeps a namespace's prefix from ever covering cluster-scoped keys).
Names, namespaces and resources never contain ``/`` (the API validates them), so a prefix range of
``.../<namespace>/`` holds exactly that namespace.

A stored value is the object's JSON text without ``metadata.resourceVersion``, which is the key's
``mod_revision`` and is set on every read, as kube-apiserver does. A value starting with
``TOMBSTONE`` is an object deleted by the update that removed its last finalizer: etcd refuses a
put and a delete of one key in a single transaction, so that deletion is a put of the final state
marked as deleted, and readers treat the key as absent (the compactor removes old tombstones).

Continue tokens carry the list's revision and the next key relative to the listed range, so that a
page can be continued on any API server over the same etcd (base64 JSON, as apimachinery's).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import NamedTuple

from vmplane.store.base import InvalidObjectError

__all__ = [
    "COMPACT_KEY",
    "TOMBSTONE",
    "ContinueToken",
    "decode_continue",
    "encode_continue",
    "object_key",
    "prefix_end",
    "scan_prefix",
]

# As kube-apiserver's compact_rev_key: outside every object prefix, its version counts compactions.
COMPACT_KEY = b"compact_rev_key"
TOMBSTONE = b"\x00"


def object_key(prefix: str, resource: str, namespace: str, name: str) -> bytes:
    """The key of one object."""
    return f"{prefix}/{resource}/{namespace}/{name}".encode()


def scan_prefix(prefix: str, resource: str, namespace: str | None) -> bytes:
    """The key prefix of a resource's objects in one namespace, or in all when None."""
    if namespace is None:
        return f"{prefix}/{resource}/".encode()
    return f"{prefix}/{resource}/{namespace}/".encode()


def prefix_end(key_prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``key_prefix`` (etcd's ``GetPrefixRangeEnd``)."""
    end = bytearray(key_prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # every key


class ContinueToken(NamedTuple):
    """Where the next page of a list starts: ``start`` (after the listed prefix), as of ``revision``."""

    revision: int
    start: str


def encode_continue(token: ContinueToken) -> str:
    """The opaque text handed to the client."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": token.revision, "start": token.start})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_continue(text: str) -> ContinueToken:
    """Parse a continue token; InvalidObjectError names the field when it is not one of ours."""
    try:
        data = json.loads(base64.urlsafe_b64decode(text.encode()))
    except (binascii.Error, ValueError, UnicodeError) as err:
        raise InvalidObjectError(f"continue: not a continue token: {err}") from err
    if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
        raise InvalidObjectError("continue: not a continue token")
    revision, start = data.get("rv"), data.get("start")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise InvalidObjectError("continue: bad resource version")
    if not isinstance(start, str) or not start or start.startswith("/") or ".." in start.split("/"):
        raise InvalidObjectError("continue: bad start key")
    return ContinueToken(revision, start)
