"""cloud-init NoCloud seed images, built in memory with pycdlib (no ``genisoimage`` shell-out).

A NoCloud seed is an ISO 9660 filesystem labelled ``cidata`` holding ``user-data``, ``meta-data`` and,
when the VM gives network data, ``network-config`` (cloud-init's datasource documentation). The names
carry a ``-``, which plain ISO 9660 cannot spell, so the image has Rock Ridge and Joliet names as
``cloud-localds`` (``genisoimage -J -R -V cidata``) writes them; cloud-init reads either.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass

from pycdlib.pycdlib import PyCdlib

from vmplane.api.volumes import CloudInitNoCloud

__all__ = ["SEED_LABEL", "NoCloudData", "SeedError", "nocloud_data", "seed_image"]

SEED_LABEL = "cidata"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)

#: ISO 9660 names (8.3, upper case) for the files, with the real names given as Rock Ridge/Joliet names.
_ISO_NAMES = {"user-data": "/USERDATA.;1", "meta-data": "/METADATA.;1", "network-config": "/NETCFG.;1"}


class SeedError(ValueError):
    """The cloud-init data cannot be turned into a seed (bad base64, an unsupported source)."""


@dataclass(frozen=True, slots=True)
class NoCloudData:
    """The files of a seed, as bytes."""

    user_data: bytes
    meta_data: bytes
    network_config: bytes | None = None


def _decoded(text: str | None, encoded: str | None, what: str) -> bytes | None:
    if encoded is not None:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as err:
            raise SeedError(f"{what}Base64 is not valid base64: {err}") from err
    return text.encode() if text is not None else None


def _scalar(value: str) -> str:
    """``value`` as a YAML scalar: plain when it is a plain name, else a JSON string (valid YAML), so a
    hostname holding a newline or ``: `` cannot add keys to meta-data."""
    return value if _PLAIN.fullmatch(value) else json.dumps(value)


def nocloud_data(source: CloudInitNoCloud, *, instance_id: str, hostname: str) -> NoCloudData:
    """The seed files for a ``cloudInitNoCloud`` volume (Secret references are not served here)."""
    if source.secret_ref is not None or source.network_data_secret_ref is not None:
        raise SeedError("cloudInitNoCloud: secretRef and networkDataSecretRef are not supported on this host")
    user = _decoded(source.user_data, source.user_data_base64, "userData")
    network = _decoded(source.network_data, source.network_data_base64, "networkData")
    meta = f"instance-id: {_scalar(instance_id)}\nlocal-hostname: {_scalar(hostname)}\n".encode()
    return NoCloudData(user_data=user or b"", meta_data=meta, network_config=network)


def seed_image(data: NoCloudData) -> bytes:
    """The ISO image of a NoCloud seed."""
    files = {"user-data": data.user_data, "meta-data": data.meta_data}
    if data.network_config is not None:
        files["network-config"] = data.network_config
    iso = PyCdlib()
    iso.new(interchange_level=3, vol_ident=SEED_LABEL, joliet=3, rock_ridge="1.09")
    try:
        for name, content in files.items():
            iso.add_fp(
                io.BytesIO(content),
                len(content),
                iso_path=_ISO_NAMES[name],
                rr_name=name,
                joliet_path=f"/{name}",
            )
        out = io.BytesIO()
        iso.write_fp(out)
    finally:
        iso.close()
    return out.getvalue()
