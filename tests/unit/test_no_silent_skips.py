"""``tests/conftest.py``: a test needing a component ``VMPLANE_REQUIRE`` lists fails instead of skipping.

Each test runs pytest in a subprocess on a tiny generated test file next to a copy of the real
conftest, with ``PATH`` holding only the stand-in tools a test asks for.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

NEEDS_KUBECTL = """
import pytest

@pytest.mark.requires("kubectl")
def test_needs_kubectl():
    assert True
"""

FIXTURE_SKIPS = """
import pytest

@pytest.fixture
def cluster():
    pytest.skip("no cluster here")

@pytest.mark.requires("kubectl")
def test_uses_cluster(cluster):
    assert True
"""

MODULE_SKIP = """
import pytest

pytest.skip("nothing to test here", allow_module_level=True)

def test_never_collected():
    assert True
"""


def run_pytest(
    tmp_path: Path, source: str, *, require: str, tools: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """pytest on ``source`` with only ``tools`` (stand-ins that do nothing) on PATH."""
    shutil.copyfile(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_generated.py").write_text(source)
    empty = tmp_path / "bin"
    empty.mkdir()
    for tool in tools:
        shutil.copy("/bin/true", empty / tool)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "test_generated.py"],
        cwd=tmp_path,
        env={"PATH": str(empty), "VMPLANE_REQUIRE": require, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_required_missing_component_fails_the_run(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, NEEDS_KUBECTL, require="qemu,kubectl")
    assert result.returncode == 1, result.stdout
    assert "kubectl is required (VMPLANE_REQUIRE) but unusable: kubectl not on PATH" in result.stdout
    assert "1 error" in result.stdout  # failed in setup, before the test ran


def test_a_missing_component_not_required_is_skipped_with_its_reason_printed(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, NEEDS_KUBECTL, require="")
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "SKIPPED [1]" in result.stdout
    assert "needs kubectl: kubectl not on PATH" in result.stdout


def test_any_skip_of_a_test_needing_a_required_component_fails(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, FIXTURE_SKIPS, require="kubectl", tools=("kubectl",))
    assert result.returncode == 1, result.stdout
    assert "skipped although it needs kubectl (VMPLANE_REQUIRE): Skipped: no cluster here" in result.stdout


def test_a_module_level_skip_fails_while_anything_is_required(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, MODULE_SKIP, require="kubectl")
    assert result.returncode != 0, result.stdout
    assert "module-level skip while VMPLANE_REQUIRE is set" in result.stdout


def test_an_unknown_required_component_is_a_usage_error(tmp_path: Path) -> None:
    result = run_pytest(tmp_path, NEEDS_KUBECTL, require="kubectl,teleporter")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "VMPLANE_REQUIRE names unknown components ['teleporter']" in result.stderr
