"""Node annotations vmplane's agents write and its API server reads (wire vocabulary of both)."""

from __future__ import annotations

__all__ = ["CONSOLE_CERT_SHA256", "CONSOLE_ENDPOINT"]

#: ``https://HOST:PORT`` where the node's agent serves its guests' console logs to the API server.
CONSOLE_ENDPOINT = "vmplane.io/console-endpoint"
#: The SHA-256 (hex) of the DER certificate that server presents: the only one the API server accepts.
CONSOLE_CERT_SHA256 = "vmplane.io/console-cert-sha256"
