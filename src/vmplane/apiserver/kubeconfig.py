"""The kubeconfig that points kubectl and the kubernetes client at this server."""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence
from pathlib import Path

import yaml

__all__ = ["KUBECONFIG_NAME", "render_kubeconfig", "write_kubeconfig"]

KUBECONFIG_NAME = "kubeconfig"


def render_kubeconfig(
    *, server: str, token: str, ca_pem: bytes | None, fallback_servers: Sequence[str] = ()
) -> str:
    """A kubeconfig for ``server``; ``fallback_servers`` become further cluster entries with the same
    CA, which vmplane's clients fail over to (``client.config``) and kubectl ignores."""

    def cluster_of(url: str) -> dict[str, str]:
        cluster = {"server": url}
        if ca_pem is not None:
            cluster["certificate-authority-data"] = base64.b64encode(ca_pem).decode()
        return cluster

    clusters = [{"name": "vmplane", "cluster": cluster_of(server)}]
    clusters += [
        {"name": f"vmplane-{n}", "cluster": cluster_of(url)} for n, url in enumerate(fallback_servers, 2)
    ]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{"name": "vmplane", "user": {"token": token}}],
        "contexts": [
            {"name": "vmplane", "context": {"cluster": "vmplane", "user": "vmplane", "namespace": "default"}}
        ],
        "current-context": "vmplane",
        "preferences": {},
    }
    return yaml.safe_dump(config, sort_keys=False)


def write_kubeconfig(data_dir: Path, text: str) -> Path:
    """Write ``<data-dir>/kubeconfig`` readable by its owner only (it holds the token)."""
    path = data_dir / KUBECONFIG_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older kubeconfig may have been wider
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path
