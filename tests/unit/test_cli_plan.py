"""``vmplane plan OLD NEW`` offline: a table of live and pending changes; bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vmplane.cli.main import main

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def test_plan_prints_live_and_pending_changes(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            str(EXAMPLES / "vm-running.yaml"),
            str(EXAMPLES / "vm-desired.yaml"),
            "--strategy",
            "LiveUpdate",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "spec.template.spec.hostname" in out
    assert "NonLiveUpdatableChange" in out
    assert "WaitingForRestart" in out
    assert "RestartRequired=True (NonLiveUpdatableChange)" in out


def test_plan_of_identical_manifests_has_no_changes(capsys: pytest.CaptureFixture[str]) -> None:
    running = str(EXAMPLES / "vm-running.yaml")
    assert main(["plan", running, running]) == 0
    assert "No changes" in capsys.readouterr().out


def test_plan_reads_the_strategy_from_a_kubevirt_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "plan",
            str(EXAMPLES / "vm-running.yaml"),
            str(EXAMPLES / "vm-desired.yaml"),
            "--kubevirt",
            str(EXAMPLES / "kubevirt-liveupdate.yaml"),
        ]
    )
    assert code == 0
    assert "vmRolloutStrategy: LiveUpdate" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("x: [", "not valid YAML"),
        ("kind: KubeVirt\n", "expected a VirtualMachine manifest"),
        (
            "kind: VirtualMachine\nmetadata: {name: a}\n"
            "spec: {template: {spec: {domain: {cpu: {sockets: x}}}}}\n",
            "spec.template.spec.domain.cpu.sockets",
        ),
        (
            "kind: VirtualMachine\nmetadata: {name: a}\nspec: {bogus: 1, template: {spec: {}}}\n",
            'unknown field "spec.bogus"',
        ),
    ],
    ids=["malformed-yaml", "wrong-kind", "invalid-field", "unknown-field"],
)
def test_invalid_input_is_one_clear_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(content)
    assert main(["plan", str(EXAMPLES / "vm-running.yaml"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert expected in err


def test_missing_file_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "/nonexistent.yaml", str(EXAMPLES / "vm-running.yaml")]) == 2
    assert "cannot read /nonexistent.yaml" in capsys.readouterr().err


@pytest.mark.parametrize("output", ["json", "yaml"])
def test_plan_output_as_data_lists_every_pending_change(
    capsys: pytest.CaptureFixture[str], output: str
) -> None:
    code = main(
        [
            "plan",
            str(EXAMPLES / "vm-running.yaml"),
            str(EXAMPLES / "vm-desired.yaml"),
            "--strategy",
            "LiveUpdate",
            "-o",
            output,
        ]
    )
    out = capsys.readouterr().out
    document = json.loads(out) if output == "json" else yaml.safe_load(out)
    assert code == 0
    assert document["vmRolloutStrategy"] == "LiveUpdate"
    assert document["restartRequired"]["reason"] == "NonLiveUpdatableChange"
    hostname = next(c for c in document["pending"] if c["path"] == "spec.template.spec.hostname")
    assert (hostname["running"], hostname["desired"]) == (None, "demo-renamed")
