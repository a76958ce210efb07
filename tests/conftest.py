"""No silent skips: tests name the machine components they need, and CI says which must be there.

A test that needs something outside Python marks it: ``@pytest.mark.requires("qemu")`` (or a module's
``pytestmark``). Without the component the test is skipped with a reason naming what is missing and
how to install it, unless ``VMPLANE_REQUIRE`` lists the component (``make test`` and ``.ci/run`` set
``VMPLANE_REQUIRE=qemu,kubectl,etcd,browser``): then it fails. Any other skip of a test that needs a required
component (a fixture calling ``pytest.skip``, say) fails too, and so does a module-level skip while
anything is required, because such a skip hides every test of its module.

Add a component with one entry in ``COMPONENTS``.

``etcd_cluster`` is one real etcd member on loopback for the whole session (started on first use,
killed at the end); suites share it under distinct key prefixes.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from etcd_support import EtcdCluster

GUEST = Path(__file__).resolve().parents[1] / "guest" / "out"
GUEST_FILES = ("vmlinuz", "initrd.img", "cmdline")
REQUIRE_ENV = "VMPLANE_REQUIRE"
#: What a test that boots a guest or drives a browser needs (see ``_worker_group``).
GUEST_COMPONENTS = frozenset({"qemu", "browser"})


def _tools(*tools: str, install: str) -> str | None:
    missing = [tool for tool in tools if shutil.which(tool) is None]
    return f"{', '.join(missing)} not on PATH (install: {install})" if missing else None


def _qemu() -> str | None:
    reason = _tools("qemu-system-x86_64", "qemu-img", install="make deps, or scripts/ci-install-qemu.sh")
    if reason is not None:
        return reason
    absent = [name for name in GUEST_FILES if not (GUEST / name).is_file()]
    if absent:
        return f"test guest missing {', '.join(absent)} in {GUEST} (install: make deps)"
    return None


#: component -> a check returning why it is unusable (None when it is there).
COMPONENTS: dict[str, Callable[[], str | None]] = {
    "qemu": _qemu,
    "kubectl": lambda: _tools(
        "kubectl", install="https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl into /usr/local/bin"
    ),
    "etcd": lambda: _tools("etcd", "etcdctl", install="apt-get install etcd-server etcd-client"),
    "browser": lambda: _tools("chromium", "chromedriver", install="apt-get install chromium chromium-driver"),
}


@functools.cache
def missing(component: str) -> str | None:
    """Why ``component`` cannot be used here, or None."""
    return COMPONENTS[component]()


def required() -> frozenset[str]:
    """The components ``VMPLANE_REQUIRE`` lists (comma-separated); unknown names are an error."""
    names = frozenset(n.strip() for n in os.environ.get(REQUIRE_ENV, "").split(",") if n.strip())
    unknown = names - COMPONENTS.keys()
    if unknown:
        raise pytest.UsageError(
            f"{REQUIRE_ENV} names unknown components {sorted(unknown)}; known: {sorted(COMPONENTS)}"
        )
    return names


def needs(item: pytest.Item) -> list[str]:
    """The components ``item``'s ``requires`` markers name."""
    return [name for marker in item.iter_markers("requires") for name in marker.args]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"requires(*components): the test needs these machine components ({', '.join(COMPONENTS)}); "
        f"skipped without them unless {REQUIRE_ENV} lists them, then failed",
    )
    required()


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        unknown = [name for name in needs(item) if name not in COMPONENTS]
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: unknown component(s) {unknown} in requires()")
        item.add_marker(pytest.mark.xdist_group(_worker_group(item)))


def _worker_group(item: pytest.Item) -> str:
    """Which tests ``make test`` runs on one pytest-xdist worker, in order (``--dist loadgroup``).

    Tests that boot guests or drive a browser all go to one worker, one at a time: two TCG guests
    booting side by side would each get half of the two cores these machines have, and their timings
    are what those tests check. Every other module stays whole on its worker, so its module-scoped
    fixtures (a control plane, an etcd cluster) start once.
    """
    if GUEST_COMPONENTS.intersection(needs(item)):
        return "guests"
    return item.nodeid.partition("::")[0]


def pytest_runtest_setup(item: pytest.Item) -> None:
    must = required()
    for name in needs(item):
        reason = missing(name)
        if reason is None:
            continue
        if name in must:
            pytest.fail(f"{name} is required ({REQUIRE_ENV}) but unusable: {reason}", pytrace=False)
        pytest.skip(f"needs {name}: {reason}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    must = required().intersection(needs(item))
    if report.skipped and must and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped although it needs {', '.join(sorted(must))} ({REQUIRE_ENV}): " + (
            str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        )
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped and required():
        report.outcome = "failed"
        report.longrepr = (
            f"module-level skip while {REQUIRE_ENV} is set (mark the tests with requires() instead): "
            + (str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr))
        )
    return report


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    """One etcd member for the session, its data on /dev/shm (tests need its semantics, not its disk)."""
    # Imported here: this conftest is also copied alone into scratch directories (test_no_silent_skips).
    from etcd_support import EtcdCluster

    cluster = EtcdCluster(in_memory=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
