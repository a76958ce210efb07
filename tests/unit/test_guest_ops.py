"""Upstream's rules for pause, unpause, reset and softreboot, and the requests they leave on the VMI."""

from __future__ import annotations

from typing import Any

import pytest

from vmplane.api.guest_ops import (
    PAUSE_ANNOTATION,
    GuestAction,
    GuestOpRefusedError,
    check_agent_query,
    check_request,
    done_annotations,
    pending_requests,
    requested_annotations,
)
from vmplane.api.vmi import VirtualMachineInstance

PAUSED = {"type": "Paused", "status": "True", "reason": "PausedByUser"}


def vmi(phase: str, *conditions: dict[str, str], acpi: bool | None = None) -> VirtualMachineInstance:
    domain: dict[str, Any] = {} if acpi is None else {"features": {"acpi": {"enabled": acpi}}}
    return VirtualMachineInstance.model_validate(
        {
            "metadata": {"name": "v"},
            "spec": {"domain": domain},
            "status": {"phase": phase, "conditions": list(conditions)},
        }
    )


@pytest.mark.parametrize(
    ("action", "target", "code", "message"),
    [
        (GuestAction.PAUSE, vmi("Scheduled"), 409, "VM is not running"),
        (GuestAction.PAUSE, vmi("Running", PAUSED), 409, "VMI is already paused"),
        (GuestAction.UNPAUSE, vmi("Succeeded"), 409, "VMI is not running"),
        (GuestAction.UNPAUSE, vmi("Running"), 409, "VMI is not paused"),
        (GuestAction.RESET, vmi("Scheduled"), 409, "Failed to reset non-running VMI with phase Scheduled"),
        (GuestAction.SOFT_REBOOT, vmi("Pending"), 409, "VM is not running"),
        (GuestAction.SOFT_REBOOT, vmi("Running", PAUSED), 409, "VMI is paused"),
        (
            GuestAction.SOFT_REBOOT,
            vmi("Running", acpi=False),
            409,
            "VMI neither have the agent connected nor the ACPI feature enabled",
        ),
    ],
    ids=[
        "pause-not-running",
        "pause-paused",
        "unpause-not-running",
        "unpause-not-paused",
        "reset-not-running",
        "softreboot-not-running",
        "softreboot-paused",
        "softreboot-no-acpi-no-agent",
    ],
)
def test_refusals_are_upstreams(
    action: GuestAction, target: VirtualMachineInstance, code: int, message: str
) -> None:
    with pytest.raises(GuestOpRefusedError) as refused:
        check_request(target, action)
    assert (refused.value.code, refused.value.message) == (code, message)


@pytest.mark.parametrize(
    ("action", "target"),
    [
        (GuestAction.PAUSE, vmi("Running")),
        (GuestAction.UNPAUSE, vmi("Running", PAUSED)),
        (GuestAction.RESET, vmi("Running", PAUSED)),
        (GuestAction.SOFT_REBOOT, vmi("Running")),
    ],
    ids=["pause", "unpause", "reset-while-paused", "softreboot"],
)
def test_a_running_guest_accepts(action: GuestAction, target: VirtualMachineInstance) -> None:
    check_request(target, action)


def test_pause_and_unpause_set_and_clear_the_pause_annotation() -> None:
    paused = requested_annotations({"a": "b"}, GuestAction.PAUSE, token="t")
    assert paused == {"a": "b", PAUSE_ANNOTATION: "true"}
    assert requested_annotations(paused, GuestAction.UNPAUSE, token="t") == {"a": "b"}


def test_a_one_shot_request_is_pending_until_its_token_is_done() -> None:
    requested = requested_annotations({}, GuestAction.RESET, token="t1")
    assert pending_requests(requested) == (GuestAction.RESET,)
    done = done_annotations(requested, (GuestAction.RESET,))
    assert pending_requests(done) == ()
    again = requested_annotations(done, GuestAction.RESET, token="t2")
    assert pending_requests(again) == (GuestAction.RESET,)


def test_agent_queries_need_a_running_vmi_with_its_agent_connected() -> None:
    with pytest.raises(GuestOpRefusedError, match="VMI is not running"):
        check_agent_query(vmi("Scheduled"))
    with pytest.raises(GuestOpRefusedError, match="VMI does not have guest agent connected"):
        check_agent_query(vmi("Running"))
    check_agent_query(vmi("Running", {"type": "AgentConnected", "status": "True"}))
