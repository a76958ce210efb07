"""The ``vmplane`` command's own surface: its version, and help written for users."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from vmplane.cli.main import build_parser, main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"vmplane {importlib.metadata.version('vmplane')}"


def _subcommands() -> dict[str, str]:
    parser = build_parser()
    [action] = [a for a in parser._actions if a.dest == "command"]
    return {name: sub.format_help() for name, sub in action.choices.items()}  # type: ignore[union-attr]


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_command_has_a_description_for_users(command: str) -> None:
    parser = build_parser()
    [action] = [a for a in parser._actions if a.dest == "command"]
    sub = action.choices[command]  # type: ignore[index]
    assert sub.description, f"vmplane {command} --help has no description"
    assert "``" not in sub.description, "a developer docstring leaked into --help"


def test_serve_refuses_a_fence_timeout_not_shorter_than_the_grace_period(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "serve",
            "--data-dir",
            str(tmp_path),
            "--node-monitor-grace-period",
            "20",
            "--node-fence-timeout",
            "30",
        ]
    )
    assert code == 2
    assert "must be positive and shorter than the node monitor grace period" in capsys.readouterr().err


def test_controller_refuses_a_fence_timeout_not_shorter_than_the_grace_period(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "controller",
            *("--kubeconfig", str(tmp_path / "kubeconfig")),
            *("--node-monitor-grace-period", "6", "--node-fence-timeout", "6"),
        ]
    )
    assert code == 2
    assert "must be positive and shorter than the node monitor grace period" in capsys.readouterr().err


def test_agent_refuses_a_fence_timeout_that_is_not_positive(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = main(
        [
            "agent",
            *("--kubeconfig", str(tmp_path / "kubeconfig"), "--node", "node01"),
            *("--data-dir", str(tmp_path / "data"), "--node-fence-timeout", "0"),
        ]
    )
    assert code == 2
    assert "--node-fence-timeout must be positive" in capsys.readouterr().err
