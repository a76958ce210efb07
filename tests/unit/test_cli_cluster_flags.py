"""``vmplane agent``'s ``--node-labels`` and ``--node-taints``, read as kubelet reads its flags."""

from __future__ import annotations

import pytest

from vmplane.api.scheduling import Taint
from vmplane.cli.cluster import parse_labels, parse_taints


def test_node_labels_are_comma_separated_key_value_pairs() -> None:
    assert parse_labels("zone=a, rack=r1,empty=") == {"zone": "a", "rack": "r1", "empty": ""}
    assert parse_labels("") == {}


@pytest.mark.parametrize("text", ["zone", "=a", "zone=a,rack"])
def test_a_label_without_key_and_equals_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--node-labels"):
        parse_labels(text)


def test_node_taints_have_an_optional_value_and_an_effect() -> None:
    assert parse_taints("gpu=true:NoSchedule,maintenance:NoExecute") == (
        Taint("gpu", "true", "NoSchedule"),
        Taint("maintenance", "", "NoExecute"),
    )


@pytest.mark.parametrize("text", ["gpu=true", "gpu=true:Sometimes", ":NoSchedule"])
def test_a_taint_without_a_known_effect_or_key_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ValueError, match="--node-taints"):
        parse_taints(text)
