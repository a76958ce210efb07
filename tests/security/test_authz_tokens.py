"""The token file: hashed, 0600, replaced atomically, and re-read by a running authenticator."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from vmplane.apiserver.authz import Role
from vmplane.apiserver.tokens import (
    TOKENS_NAME,
    TokenAuthenticator,
    TokenError,
    create_token,
    list_tokens,
    revoke_token,
    seed_admin_token,
    single_token,
)


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_token_file_holds_only_the_hash_of_each_token(tmp_path: Path) -> None:
    record, token = create_token(tmp_path, Role.VIEWER)
    text = (tmp_path / TOKENS_NAME).read_text()
    assert token not in text
    assert json.loads(text)["tokens"][0]["sha256"] == hashlib.sha256(token.encode()).hexdigest()
    assert record.user.name == "viewer"


def test_token_file_is_owner_only(tmp_path: Path) -> None:
    create_token(tmp_path, Role.VIEWER)
    assert stat.S_IMODE((tmp_path / TOKENS_NAME).stat().st_mode) == 0o600


def test_node_token_authenticates_as_that_node(tmp_path: Path) -> None:
    _, token = create_token(tmp_path, Role.NODE, node="node02")
    user = TokenAuthenticator(tmp_path).authenticate(bearer(token))
    assert user is not None
    assert (user.name, user.groups[0]) == ("system:node:node02", "system:nodes")


def test_unknown_token_authenticates_no_one(tmp_path: Path) -> None:
    create_token(tmp_path, Role.ADMIN)
    assert TokenAuthenticator(tmp_path).authenticate(bearer("not-a-token")) is None


def test_header_without_bearer_scheme_authenticates_no_one(tmp_path: Path) -> None:
    _, token = create_token(tmp_path, Role.ADMIN)
    assert TokenAuthenticator(tmp_path).authenticate(f"Basic {token}") is None


def test_revoke_takes_effect_on_a_running_authenticator(tmp_path: Path) -> None:
    record, token = create_token(tmp_path, Role.VIEWER)
    authenticator = TokenAuthenticator(tmp_path)
    assert authenticator.authenticate(bearer(token)) is not None
    revoke_token(tmp_path, record.id)
    assert authenticator.authenticate(bearer(token)) is None


def test_create_takes_effect_on_a_running_authenticator(tmp_path: Path) -> None:
    create_token(tmp_path, Role.ADMIN)
    authenticator = TokenAuthenticator(tmp_path)
    authenticator.authenticate(bearer("warm-up"))
    _, token = create_token(tmp_path, Role.VIEWER)
    user = authenticator.authenticate(bearer(token))
    assert (user.name if user else None) == "viewer"


def test_revoke_of_unknown_id_names_it(tmp_path: Path) -> None:
    create_token(tmp_path, Role.VIEWER)
    with pytest.raises(TokenError, match='no token with id "nope"'):
        revoke_token(tmp_path, "nope")


def test_list_shows_ids_roles_and_nodes(tmp_path: Path) -> None:
    viewer, _ = create_token(tmp_path, Role.VIEWER)
    node, _ = create_token(tmp_path, Role.NODE, node="node07")
    listed = list_tokens(tmp_path)
    assert [(r.id, r.role, r.node) for r in listed] == [
        (viewer.id, "viewer", None),
        (node.id, "node", "node07"),
    ]


def test_seeded_admin_token_is_admin(tmp_path: Path) -> None:
    seed_admin_token(tmp_path, "the-old-token")
    user = TokenAuthenticator(tmp_path).authenticate(bearer("the-old-token"))
    assert (user.name if user else None) == "admin"


def test_seeding_again_does_not_bring_back_a_revoked_admin_token(tmp_path: Path) -> None:
    seed_admin_token(tmp_path, "the-old-token")
    revoke_token(tmp_path, list_tokens(tmp_path)[0].id)
    seed_admin_token(tmp_path, "the-old-token")
    assert TokenAuthenticator(tmp_path).authenticate(bearer("the-old-token")) is None


def test_corrupt_token_file_admits_no_one(tmp_path: Path) -> None:
    _, token = create_token(tmp_path, Role.ADMIN)
    (tmp_path / TOKENS_NAME).write_text("{not json")
    assert TokenAuthenticator(tmp_path).authenticate(bearer(token)) is None


def test_single_token_admits_that_token_as_admin() -> None:
    authenticate = single_token("s3cret")
    admitted = authenticate(bearer("s3cret"))
    assert (admitted.name if admitted else None) == "admin"
    assert authenticate(bearer("other")) is None


def test_admin_token_is_seeded_into_a_file_made_before_the_first_start(tmp_path: Path) -> None:
    create_token(tmp_path, Role.VIEWER)
    seed_admin_token(tmp_path, "the-old-token")
    user = TokenAuthenticator(tmp_path).authenticate(bearer("the-old-token"))
    assert (user.name if user else None) == "admin"


def test_seeding_twice_adds_one_admin(tmp_path: Path) -> None:
    seed_admin_token(tmp_path, "the-old-token")
    seed_admin_token(tmp_path, "the-old-token")
    assert [r.role for r in list_tokens(tmp_path)] == ["admin"]
