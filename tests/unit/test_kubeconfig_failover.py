"""A kubeconfig's further cluster entries with the current cluster's CA are failover servers."""

from __future__ import annotations

from pathlib import Path

import yaml

from vmplane.apiserver.kubeconfig import render_kubeconfig
from vmplane.client.config import read_kubeconfig

CA = b"-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n"


def test_rendered_fallback_servers_are_read_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        render_kubeconfig(
            server="https://a:6443",
            token="t",
            ca_pem=CA,
            fallback_servers=["https://b:6443", "https://c:6443"],
        )
    )
    config = read_kubeconfig(path)
    assert config.server == "https://a:6443"
    assert config.fallback_servers == ("https://b:6443", "https://c:6443")


def test_a_cluster_entry_with_another_ca_is_not_a_fallback(tmp_path: Path) -> None:
    doc = yaml.safe_load(render_kubeconfig(server="https://a:6443", token="t", ca_pem=CA))
    doc["clusters"].append(
        {
            "name": "elsewhere",
            "cluster": {"server": "https://x:6443", "certificate-authority-data": "b3RoZXI="},
        }
    )
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    assert read_kubeconfig(path).fallback_servers == ()


def test_a_plain_kubeconfig_has_no_fallbacks(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(render_kubeconfig(server="https://a:6443", token="t", ca_pem=CA))
    assert read_kubeconfig(path).fallback_servers == ()
