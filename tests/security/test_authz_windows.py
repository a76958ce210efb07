"""Who may write a MaintenanceWindow: only identities allowed to restart VMs at cluster scope, since a
window restarts every VM it selects (pure ``authorize()``, then the API through plain HTTPS)."""

from __future__ import annotations

from typing import Any

import pytest
from authz_support import AuthzServer, Identity, authz_server

from vmplane.apiserver.authz import (
    ROLE_RULES,
    WINDOW_NEEDS_RESTART,
    Attributes,
    Role,
    Rule,
    User,
    authorize,
    forbidden_message,
    user_for,
)

__all__ = ["authz_server"]

GROUP = "vmplane.io"
WINDOWS_PATH = "/apis/vmplane.io/v1alpha1/maintenancewindows"


def window(verb: str, subresource: str = "") -> Attributes:
    return Attributes(
        verb=verb, api_group=GROUP, resource="maintenancewindows", subresource=subresource, name="w"
    )


@pytest.mark.parametrize("verb", ["create", "update", "patch"])
def test_an_admin_may_write_windows(verb: str) -> None:
    assert authorize(user_for(Role.ADMIN), window(verb)).allowed


@pytest.mark.parametrize("verb", ["create", "update", "patch"])
def test_the_controllers_may_not_write_a_window_they_cannot_restart_vms(verb: str) -> None:
    decision = authorize(user_for(Role.CONTROLLERS), window(verb))
    assert not decision.allowed


def test_an_identity_granted_windows_but_not_restarts_is_refused_in_admission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No built-in role is such an identity; a custom one shows the rule holds whatever the table grants.
    planner = User(name="planner", groups=("planners",))
    monkeypatch.setitem(
        ROLE_RULES, "planners", (Rule(verbs=frozenset({"create"}), groups=frozenset({GROUP})),)
    )
    decision = authorize(planner, window("create"))
    assert (decision.allowed, decision.reason, decision.admission) == (False, WINDOW_NEEDS_RESTART, True)
    assert forbidden_message(planner, window("create"), decision) == (
        f'maintenancewindows.vmplane.io "w" is forbidden: {WINDOW_NEEDS_RESTART}'
    )


def test_the_controllers_write_window_status() -> None:
    assert authorize(user_for(Role.CONTROLLERS), window("update", "status")).allowed


def test_a_viewer_reads_windows_but_cannot_create_one() -> None:
    viewer = user_for(Role.VIEWER)
    assert authorize(viewer, window("list")).allowed
    assert not authorize(viewer, window("create")).allowed


def body() -> dict[str, Any]:
    return {
        "apiVersion": "vmplane.io/v1alpha1",
        "kind": "MaintenanceWindow",
        "metadata": {"name": "w"},
        "spec": {"schedule": {"days": ["Sun"], "start": "02:00", "end": "03:00"}},
    }


@pytest.fixture(scope="module")
def controllers(authz_server: AuthzServer) -> Identity:
    return authz_server.identity("controllers")


def test_the_controllers_identity_cannot_create_a_window_through_the_api(
    authz_server: AuthzServer, controllers: Identity
) -> None:
    status, answer = authz_server.request(
        controllers, "POST", WINDOWS_PATH, body=body(), content_type="application/json"
    )
    assert status == 403
    assert answer["message"] == (
        'maintenancewindows.vmplane.io is forbidden: User "system:vmplane:controllers" cannot create '
        'resource "maintenancewindows" in API group "vmplane.io" at the cluster scope'
    )


def test_an_admin_creates_a_window(authz_server: AuthzServer) -> None:
    status, answer = authz_server.request(
        authz_server.admin, "POST", WINDOWS_PATH, body=body(), content_type="application/json"
    )
    assert status == 201, answer
    assert answer["spec"]["maxUnavailable"] == 1
