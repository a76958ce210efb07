"""``limit``/``continue``: pages of one list at one revision, with everything to resume in the token.

As etcd3's continue key, a token holds the list's resourceVersion and the last key returned; the
next page is the list at that revision (:mod:`vmplane.apiserver.list_history`) after that key. It also
holds what it was issued for, the resource and namespace (its ``scope``), and is refused for any
other list, as etcd refuses a key outside the list's prefix: a VM list's token cannot page through
Nodes. The selectors of the first page travel in the token too, so a client that leaves them off
later pages (as some do) still gets the list it started.

The token is not secret: all it can name is a revision and a position in a list the request is
authorised to read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from vmplane.apiserver import status as st

__all__ = ["EXPIRED", "Page", "Resume", "decode_token", "page"]

Item = TypeVar("Item")
Key = tuple[str, str]

EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


@dataclass(frozen=True, slots=True)
class Resume:
    """What a continue token says: the list's revision, the last key returned, the list's identity."""

    resource_version: int
    after: Key
    scope: str
    label_selector: str
    field_selector: str


@dataclass(frozen=True, slots=True)
class Page(Generic[Item]):
    items: list[Item]
    resource_version: int
    continue_token: str
    remaining: int | None


def page(
    items: list[Item],
    *,
    key: Callable[[Item], Key],
    resource_version: int,
    limit: int,
    scope: str,
    label_selector: str,
    field_selector: str,
) -> Page[Item]:
    """The first ``limit`` of ``items`` (all of them for no limit) and the token for the rest."""
    if limit <= 0 or len(items) <= limit:
        return Page(items, resource_version, "", None)
    shown = items[:limit]
    resume = Resume(resource_version, key(shown[-1]), scope, label_selector, field_selector)
    return Page(shown, resource_version, _encode(resume), len(items) - limit)


def _encode(resume: Resume) -> str:
    raw = {
        "v": "meta.k8s.io/v1",
        "rv": resume.resource_version,
        "start": list(resume.after),
        "scope": resume.scope,
        "labels": resume.label_selector,
        "fields": resume.field_selector,
    }
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_token(token: str, *, scope: str) -> Resume:
    """The token's contents; 400 when it is malformed or was issued for another list."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = raw["start"]
        resume = Resume(
            resource_version=raw["rv"],
            after=(after[0], after[1]),
            scope=raw["scope"],
            label_selector=raw["labels"],
            field_selector=raw["fields"],
        )
    except (ValueError, KeyError, TypeError, IndexError, binascii.Error) as err:
        raise st.bad_request(f"continue key is not valid: {err}") from err
    strings = (*resume.after, resume.scope, resume.label_selector, resume.field_selector)
    if (
        raw.get("v") != "meta.k8s.io/v1"
        or not isinstance(resume.resource_version, int)
        or isinstance(resume.resource_version, bool)
        or resume.resource_version < 1
        or len(after) != 2
        or not all(isinstance(s, str) for s in strings)
    ):
        raise st.bad_request("continue key is not valid: malformed")
    if resume.scope != scope:
        raise st.bad_request(
            "continue key is not valid: it was issued for another list (resource or namespace)"
        )
    return resume
