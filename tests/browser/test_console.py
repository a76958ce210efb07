"""The web console in a real browser: Debian's headless Chromium driven by Selenium (chromedriver from
the same package), against an in-process control plane on the simulated hypervisor.

The tests run in order, as one walk-through: sign in, watch a live change arrive, see a non-live one
pending, revert it from the page, preview and save an edit, restart; then a viewer. They save the
README's two screenshots into ``$VMPLANE_SCREENSHOTS`` when it is set (``VMPLANE_SCREENSHOTS=docs/images``
refreshes the committed ones), else into a temporary directory, so that a run leaves the tree clean
(the events in them carry timestamps).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from console_support import chromium, element, shows, visible_text, wait_for
from rollout_support import Cluster, InProcessServer, condition, printable
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from test_api_support import SMALL_VM

from vmplane.apiserver.authz import Role
from vmplane.apiserver.tokens import create_token
from vmplane.app import ControlPlane, PlaneOptions
from vmplane.store.base import Store

pytestmark = pytest.mark.requires("browser")

SCREENSHOTS = "VMPLANE_SCREENSHOTS"


@dataclass
class FileConsoles:
    """Console logs as plain files, one per VM, which the test writes as a guest would."""

    root: Path

    def path(self, namespace: str, name: str) -> Path | None:
        return self.root / f"{namespace}_{name}.log"


@dataclass
class ConsoleServer(InProcessServer):
    """The in-process control plane, reading console logs from ``consoles``."""

    consoles: FileConsoles = field(default_factory=lambda: FileConsoles(Path("/nonexistent")))

    def _make_plane(self, store: Store) -> ControlPlane:
        options = PlaneOptions(data_dir=self.data_dir, hypervisor="simulated", crash_backoff=0.2)
        self.plane = ControlPlane(store, options, hypervisor=self._make_hypervisor, console=self.consoles)
        return self.plane


class Plane:
    def __init__(self, server: ConsoleServer, cluster: Cluster) -> None:
        self.server = server
        self.cluster = cluster
        self.url = f"https://127.0.0.1:{server.port}/ui/"
        self.admin_token = (server.data_dir / "token").read_text().strip()
        self.viewer_token = create_token(server.data_dir, Role.VIEWER)[1]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    logs = tmp_path_factory.mktemp("logs")
    server = ConsoleServer(data_dir=tmp_path_factory.mktemp("console"), consoles=FileConsoles(logs))
    server.start()
    cluster = Cluster(server.api())
    try:
        for name in ("web", "db"):
            cluster.create_vm(SMALL_VM.format(name=name, run_strategy="Always"))
        for name in ("web", "db"):
            cluster.wait("virtualmachines", name, lambda o: printable(o) == "Running")
        yield Plane(server, cluster)
    finally:
        cluster.api.close()
        server.stop()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get(SCREENSHOTS)
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser(plane: Plane) -> Iterator[WebDriver]:
    """Quit before the server stops (it depends on ``plane``), so no watch is left open to it."""
    with chromium() as driver:
        yield driver


def confirm(driver: WebDriver) -> None:
    element(driver, "#confirm-yes").click()


def sign_in(driver: WebDriver, plane: Plane, token: str) -> None:
    """Sign in from the keyboard alone: the token field has the focus, Enter submits."""
    driver.get(plane.url)
    element(driver, "#token")
    driver.switch_to.active_element.send_keys(token, Keys.ENTER)
    element(driver, 'tr[data-vm="default/web"]')


def fetch_status(driver: WebDriver, method: str, path: str, *, csrf: bool) -> int:
    """The HTTP status of a fetch made by the page itself (the session cookie goes with it)."""
    script = """
        const [method, path, csrf, done] = arguments;
        const headers = {};
        if (csrf) headers["X-CSRF-Token"] = (await (await fetch("/ui/session")).json()).csrf;
        done((await fetch(path, {method, headers})).status);
    """
    return int(driver.execute_async_script(f"(async () => {{ {script} }})()", method, path, csrf))


RESTART = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachines/web/restart"


def test_sign_in_sets_an_httponly_secure_strict_cookie(browser: WebDriver, plane: Plane) -> None:
    sign_in(browser, plane, plane.admin_token)
    cookie = browser.get_cookie("vmplane_session")
    assert cookie is not None
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert browser.execute_script("return document.cookie") == ""


def test_the_fleet_lists_every_vm_with_status_node_and_sizes(browser: WebDriver, plane: Plane) -> None:
    row = 'tr[data-vm="default/web"]'
    shows(browser, f"{row} .vcpus", "1 / 1")
    shows(browser, f"{row} .status", "Running")
    shows(browser, f"{row} .node", "node01")
    shows(browser, f"{row} .memory", "1Gi / 1Gi")
    shows(browser, f"{row} .pending", "0")


def test_the_rollout_strategy_is_switched_from_the_page(browser: WebDriver, plane: Plane) -> None:
    shows(browser, "#strategy-name", "Stage")
    element(browser, "#strategy-switch").click()
    confirm(browser)
    shows(browser, "#strategy-name", "LiveUpdate")
    kubevirt = plane.cluster.custom.get_namespaced_custom_object(
        "kubevirt.io", "v1", "kubevirt", "kubevirts", "kubevirt"
    )
    assert kubevirt["spec"]["configuration"]["vmRolloutStrategy"] == "LiveUpdate"


def test_a_live_change_arrives_without_a_reload(browser: WebDriver, plane: Plane) -> None:
    browser.execute_script("window.notReloaded = true")
    plane.cluster.patch_vm("web", {"spec": {"template": {"spec": {"domain": {"cpu": {"sockets": 2}}}}}})
    shows(browser, 'tr[data-vm="default/web"] .vcpus', "2 / 2")
    assert browser.execute_script("return window.notReloaded") is True


def test_a_non_live_change_shows_in_the_banner_and_filters(
    browser: WebDriver, plane: Plane, images: Path
) -> None:
    plane.cluster.patch_vm("web", {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 2}}}}}})
    shows(browser, "#banner strong", "1 VM is pending restart")
    shows(browser, 'tr[data-vm="default/web"] .pending', "1")
    assert browser.save_screenshot(str(images / "console-fleet.png"))
    element(browser, "#banner-filter").click()
    wait_for(
        browser, lambda d: not d.find_elements(By.CSS_SELECTOR, 'tr[data-vm="default/db"]'), "not filtered"
    )
    element(browser, "#banner-filter").click()
    element(browser, 'tr[data-vm="default/db"]')


def test_the_vm_page_shows_running_and_desired_of_each_pending_change(
    browser: WebDriver, plane: Plane, images: Path
) -> None:
    element(browser, 'tr[data-vm="default/web"] a').click()
    row = 'tr[data-path="spec.template.spec.domain.cpu.cores"]'
    shows(browser, f"{row} .running", "1")
    shows(browser, f"{row} .desired", "2")
    shows(browser, f"{row} .source", "template")
    shows(browser, f"{row} .reason", "NonLiveUpdatableChange")
    wait_for(
        browser, lambda d: visible_text(d, "#restart-required").startswith("RestartRequired:"), "no message"
    )
    assert browser.save_screenshot(str(images / "console-pending.png"))


def test_the_vm_page_lists_the_vms_events(browser: WebDriver, plane: Plane) -> None:
    wait_for(browser, lambda d: "HotplugApplied" in visible_text(d, "#events"), "no HotplugApplied event")
    assert "RestartRequired" in visible_text(browser, "#events")


def test_the_serial_console_follows_the_guest(browser: WebDriver, plane: Plane) -> None:
    log = plane.server.consoles.root / "default_web.log"
    with log.open("a") as guest:
        guest.write("booting\n")
        guest.flush()
        wait_for(browser, lambda d: "booting" in visible_text(d, "#console"), "the console never showed")
        guest.write("VMPLANE-STATUS vcpus=2\n")
    wait_for(browser, lambda d: "VMPLANE-STATUS vcpus=2" in visible_text(d, "#console"), "not followed")


def test_revert_from_the_page_clears_the_condition(browser: WebDriver, plane: Plane) -> None:
    # From the keyboard: Enter on the row's Revert, Enter again on the confirmation's focused button.
    element(browser, 'tr[data-path="spec.template.spec.domain.cpu.cores"] button.revert').send_keys(
        Keys.ENTER
    )
    wait_for(browser, lambda d: d.switch_to.active_element.get_attribute("id") == "confirm-yes", "no focus")
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_for(browser, lambda d: visible_text(d, "#no-pending") != "", "the pending list never emptied")
    wait_for(browser, lambda d: not d.find_element(By.ID, "restart-required").is_displayed(), "still shown")
    vm = plane.cluster.get("virtualmachines", "web")
    assert (condition(vm, "RestartRequired") or {}).get("status") != "True"


def edit_yaml(driver: WebDriver, text: str) -> None:
    driver.execute_script(
        "const t = document.getElementById('yaml'); t.value = arguments[0];"
        "t.dispatchEvent(new Event('input'));",
        text,
    )


def test_an_edit_the_api_refuses_shows_its_status_message(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#edit").click()
    text = element(browser, "#yaml").get_attribute("value") or ""
    edit_yaml(browser, text.replace("spec:\n", "spec:\n  bogus: 1\n", 1))
    element(browser, "#preview").click()
    wait_for(
        browser, lambda d: 'unknown field "spec.bogus"' in visible_text(d, "#verdict"), "no Status message"
    )
    assert not element(browser, "#save").is_enabled()
    edit_yaml(browser, text)


def test_an_edit_preview_says_what_goes_live(browser: WebDriver, plane: Plane) -> None:
    text = element(browser, "#yaml").get_attribute("value") or ""
    assert "sockets: 2" in text
    edit_yaml(browser, text.replace("sockets: 2", "sockets: 3"))
    element(browser, "#preview").click()
    wait_for(
        browser, lambda d: "spec.template.spec.domain.cpu.sockets" in visible_text(d, "#verdict-live"), ""
    )
    shows(browser, "#verdict h4:nth-of-type(2)", "Nothing waits for a restart")


def test_an_edit_preview_says_what_waits_and_why(browser: WebDriver, plane: Plane) -> None:
    text = element(browser, "#yaml").get_attribute("value") or ""
    edit_yaml(browser, text.replace("cores: 1", "cores: 2"))
    assert not element(browser, "#save").is_enabled()  # an edit not previewed cannot be saved
    element(browser, "#preview").click()
    wait_for(browser, lambda d: "NonLiveUpdatableChange" in visible_text(d, "#verdict-pending"), "no verdict")
    waiting = visible_text(browser, "#verdict-pending")
    assert "spec.template.spec.domain.cpu.cores 1 2 NonLiveUpdatableChange" in waiting
    assert "spec.template.spec.domain.cpu.sockets 2 3 WaitingForRestart" in waiting
    shows(browser, "#verdict h4", "Nothing goes live now")
    vm = plane.cluster.get("virtualmachines", "web")
    assert vm["spec"]["template"]["spec"]["domain"]["cpu"]["cores"] == 1  # type: ignore[index]  # a dry run


def test_saving_the_previewed_edit_makes_it_pending(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#save").click()
    wait_for(browser, lambda d: not d.find_element(By.ID, "editor").is_displayed(), "the editor stayed open")
    shows(browser, 'tr[data-path="spec.template.spec.domain.cpu.cores"] .desired', "2")
    shows(browser, 'tr[data-path="spec.template.spec.domain.cpu.sockets"] .desired', "3")


def test_a_write_without_the_csrf_token_is_refused(browser: WebDriver, plane: Plane) -> None:
    assert fetch_status(browser, "PUT", RESTART, csrf=False) == 403


def test_restart_from_the_page_empties_the_pending_list(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#restart").click()
    confirm(browser)
    wait_for(browser, lambda d: "restart: done" in visible_text(d, "#progress"), "the restart never finished")
    wait_for(browser, lambda d: visible_text(d, "#no-pending") != "", "changes still pending")
    vmi = plane.cluster.get("virtualmachineinstances", "web")
    assert vmi is not None
    assert vmi["status"]["currentCPUTopology"] == {"sockets": 3, "cores": 2, "threads": 1}


def test_stop_and_start_from_the_page_show_their_progress(browser: WebDriver, plane: Plane) -> None:
    browser.get(plane.url + "#/vm/default/db")
    shows(browser, "#status", "Running")
    element(browser, "#stop").click()
    confirm(browser)
    wait_for(browser, lambda d: "stop: done" in visible_text(d, "#progress"), "the stop never finished")
    shows(browser, "#status", "Stopped")
    element(browser, "#start").click()
    confirm(browser)
    wait_for(browser, lambda d: "start: done (Running)" in visible_text(d, "#progress"), "never started")


def test_a_cancelled_confirmation_does_nothing(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#stop").click()
    element(browser, "#confirm-no").click()
    assert visible_text(browser, "#progress") == "start: done (Running)."
    assert printable(plane.cluster.get("virtualmachines", "db")) == "Running"


def test_sign_out_ends_the_session(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#sign-out").click()
    element(browser, "#token")
    assert fetch_status(browser, "GET", "/apis/kubevirt.io/v1/virtualmachines", csrf=False) == 401


def test_a_wrong_token_is_refused_with_the_apis_status_message(browser: WebDriver, plane: Plane) -> None:
    element(browser, "#token").send_keys("not-a-token")
    element(browser, "#sign-in").click()
    shows(browser, ".sign-in .error", "Unauthorized")
    browser.find_element(By.ID, "token").clear()


def test_a_viewer_sees_no_write_buttons(browser: WebDriver, plane: Plane) -> None:
    plane.cluster.patch_vm("db", {"spec": {"template": {"spec": {"domain": {"cpu": {"cores": 2}}}}}})
    sign_in(browser, plane, plane.viewer_token)
    assert "(read-only)" in element(browser, "#who").text
    element(browser, 'tr[data-vm="default/db"] a').click()
    element(browser, 'tr[data-path="spec.template.spec.domain.cpu.cores"]')  # a Revert would show here
    for control in ("#start", "#stop", "#restart", "#edit", "#revert-all", "button.revert"):
        assert not browser.find_elements(By.CSS_SELECTOR, control), control
    assert not browser.find_elements(By.ID, "console")  # a viewer may not read consoles
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "null" not in page
    assert "[object" not in page


def test_a_viewers_forged_write_gets_403(browser: WebDriver, plane: Plane) -> None:
    assert fetch_status(browser, "PUT", RESTART, csrf=True) == 403


def test_the_pages_read_at_a_phones_width(browser: WebDriver, plane: Plane) -> None:
    browser.set_window_size(390, 844)
    try:
        for page in ("#/", "#/vm/default/db"):
            browser.get(plane.url + page)
            element(browser, "#status" if "vm" in page else 'tr[data-vm="default/db"]')
            width = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert width[0] <= width[1], f"{page} scrolls sideways: {width}"
    finally:
        browser.set_window_size(1200, 900)
