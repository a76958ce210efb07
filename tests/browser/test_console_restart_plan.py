"""The web console tells when pending changes apply: on a VM's page, by its restart approval (a
``Window`` VM names the window and its next start from ``RestartScheduled``); on the fleet page, the
next maintenance window with its batches, the plan ``vmplane restarts plan`` prints (served by
``/ui/restart-plan``). Headless Chromium against an in-process plane on the simulated hypervisor.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from console_support import chromium, element, shows, visible_text, wait_for
from rollout_support import Cluster, condition, printable
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from window_support import VM, WindowPlane, Windows, window_body

from vmplane.api.timestamps import timestamp
from vmplane.apiserver.authz import Role
from vmplane.apiserver.tokens import create_token

pytestmark = pytest.mark.requires("browser")

CORES = "spec.template.spec.domain.cpu.cores"
#: (name, group, priority, approval): the window restarts "batch" VMs by priority, two at a time.
VMS = (
    ("wa", "batch", 2, "Window"),
    ("wb", "batch", 3, "Window"),
    ("wc", "batch", 1, "Window"),
    ("auto", "other", 1, "Automatic"),
    ("man", "other", 1, "Manual"),
)


@dataclass
class Plane:
    server: WindowPlane
    cluster: Cluster
    url: str
    token: str
    start: datetime


def more_cores(cluster: Cluster, name: str, cores: int) -> None:
    cluster.patch_vm(name, {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": cores}}}}}})


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    server = WindowPlane(data_dir=tmp_path_factory.mktemp("plan"))
    server.start()
    cluster = Cluster(server.api())
    try:
        for name, group, priority, approval in VMS:
            cluster.create_vm(VM.format(name=name, group=group, priority=priority, approval=approval))
        for name, *_ in VMS:
            cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running")
        # Six hours ahead, to the minute: the window does not open while the test runs.
        start = (datetime.now(UTC) + timedelta(hours=6)).replace(second=0, microsecond=0)
        Windows(cluster).create(window_body("nightly", "batch", start, maxUnavailable=2))
        for name, *_ in VMS:
            more_cores(cluster, name, 2)  # the default Stage strategy: every change waits
        token = (server.data_dir / "token").read_text().strip()
        yield Plane(server, cluster, f"https://127.0.0.1:{server.port}/ui/", token, start)
    finally:
        cluster.api.close()
        server.stop()


@pytest.fixture(scope="module")
def browser(plane: Plane) -> Iterator[WebDriver]:
    with chromium() as driver:
        driver.get(plane.url)
        element(driver, "#token")
        driver.switch_to.active_element.send_keys(plane.token, Keys.ENTER)
        element(driver, 'tr[data-vm="default/wa"]')
        yield driver


def batch_rows(driver: WebDriver) -> list[tuple[str, str, str]]:
    """(batch, VM, pending changes) of each row of the window's batches table, [] while absent."""
    script = """return [...document.querySelectorAll('#window-batches tbody tr')]
        .map((tr) => [...tr.children].map((td) => td.textContent));"""
    return [tuple(row) for row in driver.execute_script(script)]


def test_the_fleet_page_lists_the_next_window_with_its_batches(browser: WebDriver, plane: Plane) -> None:
    expected = [("1", "default/wc", CORES), ("1", "default/wa", CORES), ("2", "default/wb", CORES)]
    wait_for(browser, lambda d: batch_rows(d) == expected, "the batches never showed")
    shows(browser, "#window-name", "nightly")
    end = plane.start + timedelta(hours=1)
    summary = f"nightly: {timestamp(plane.start)} to {timestamp(end)}, at most 2 VM(s) down at a time"
    assert visible_text(browser, "#window-summary") == summary


def test_a_revert_removes_the_vm_from_the_batches_without_a_reload(browser: WebDriver, plane: Plane) -> None:
    browser.execute_script("window.notReloaded = true")
    more_cores(plane.cluster, "wb", 1)
    expected = [("1", "default/wc", CORES), ("1", "default/wa", CORES)]
    wait_for(browser, lambda d: batch_rows(d) == expected, "the reverted VM stayed in the plan")
    assert browser.execute_script("return window.notReloaded") is True


def test_a_window_vm_says_which_window_applies_its_changes_and_when(browser: WebDriver, plane: Plane) -> None:
    browser.get(plane.url + "#/vm/default/wa")
    shows(browser, "#approval", "Window")
    when = f"pending changes apply in MaintenanceWindow nightly starting {timestamp(plane.start)}"
    shows(browser, "#applies-when", f"{when} (Window approval)")
    vm = plane.cluster.get("virtualmachines", "wa")
    assert (condition(vm, "RestartScheduled") or {}).get("message") == when


def test_a_manual_vm_says_its_changes_wait_for_your_restart(browser: WebDriver, plane: Plane) -> None:
    browser.get(plane.url + "#/vm/default/man")
    shows(browser, "#approval", "Manual")
    shows(browser, "#applies-when", "at the next restart you make (Manual approval)")
    element(browser, f'tr[data-path="{CORES}"]')


def test_an_automatic_vm_applies_its_changes_at_once(browser: WebDriver, plane: Plane) -> None:
    browser.get(plane.url + "#/vm/default/auto")
    shows(browser, "#approval", "Automatic")
    wait_for(browser, lambda d: visible_text(d, "#no-pending") != "", "the Automatic VM never restarted")
    shows(browser, "#applies-when", "nothing is pending")
    vmi = plane.cluster.get("virtualmachineinstances", "auto")
    assert vmi is not None
    assert vmi["status"]["currentCPUTopology"]["cores"] == 2


def test_the_plan_is_refused_without_a_session(browser: WebDriver, plane: Plane) -> None:
    script = """const done = arguments[0];
        fetch("/ui/restart-plan", {credentials: "omit"}).then((r) => done(r.status));"""
    assert browser.execute_async_script(script) == 401


def test_the_plan_is_refused_to_an_identity_that_may_not_list_windows(
    browser: WebDriver, plane: Plane
) -> None:
    """A node identity reads VMs but not MaintenanceWindows: 403, naming what it may not list."""
    _, node_token = create_token(plane.server.data_dir, Role.NODE, node="node01")
    script = """const [token, done] = arguments;
        (async () => {
          await fetch("/ui/session", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify({token})});
          const response = await fetch("/ui/restart-plan");
          done([response.status, (await response.json()).message]);
        })();"""
    status, message = browser.execute_async_script(script, node_token)
    assert status == 403
    assert 'cannot list resource "maintenancewindows.vmplane.io"' in message
