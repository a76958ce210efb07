"""``scripts/test-deps.sh`` (``make deps``): what is missing stops it at once, in one line saying how to
install it. Runs the real script with ``PATH`` cut down to the few tools it needs (kubectl left out).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-deps.sh"
TOOLS = ("bash", "dpkg-query", "grep", "id", "dirname")


def run_deps(tmp_path: Path, require: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        os.symlink(found, bin_dir / tool)
    return subprocess.run(
        [str(bin_dir / "bash"), str(SCRIPT)],
        env={"PATH": str(bin_dir), "VMPLANE_REQUIRE": require},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_kubectl_stops_with_one_line_naming_its_install_command(tmp_path: Path) -> None:
    result = run_deps(tmp_path, "kubectl")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("make deps: kubectl is missing; install with: curl ")
    assert "dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl" in result.stderr


def test_an_unknown_component_is_refused_in_one_line(tmp_path: Path) -> None:
    result = run_deps(tmp_path, "kubectl,teleporter")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "VMPLANE_REQUIRE names unknown component 'teleporter'" in result.stderr
