"""The grammars of names and paths that end up in host paths and QEMU options, with upstream's messages.

Each check returns the list of reasons a value breaks its rule (empty when it is fine), worded as
upstream words them, so admission (``api.spec_rules``) and the node agent (``agent.machine``, which
checks again for objects that never went through admission) give the same answer:

* DNS-1123 labels and subdomains: ``k8s.io/apimachinery/pkg/util/validation`` (``IsDNS1123Label``,
  ``IsDNS1123Subdomain``): disk and volume names (KubeVirt: a disk name becomes a container name),
  namespaces, object names, ``claimName``, ``dataVolume.name``, ``hostname``;
* interface names: KubeVirt's ``validateInterfaceNameFormat`` (``[A-Za-z0-9-_]+``);
* container image references: the distribution/reference grammar (``reference/regexp.go``) that
  kubelet and docker parse ``image:`` with; it has no ``..``, no leading ``/`` and no upper case
  repository, which is what keeps an image entry inside the image directory;
* paths inside an image (``containerDisk.path``, ``kernelPath``, ``initrdPath``): KubeVirt's
  ``storage/admitters.ValidatePath`` (absolute, not ``/``, no ``.``/``..``/``//`` components), and no
  NUL, which no file name can hold;
* machine types, CPU models, UUIDs, disk serials: the shapes QEMU takes without option syntax.
"""

from __future__ import annotations

import posixpath
import re

__all__ = [
    "CPU_MODEL",
    "DISK_SERIAL_MAX",
    "DNS1123_LABEL_MAX",
    "DNS1123_SUBDOMAIN_MAX",
    "IMAGE_REFERENCE",
    "INTERFACE_NAME_MESSAGE",
    "MAC_ADDRESS",
    "UUID",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "image_reference_errors",
    "inner_path_errors",
    "interface_name_ok",
    "serial_errors",
]

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + r")*"
_LABEL_RE = re.compile(_LABEL)
_SUBDOMAIN_RE = re.compile(_SUBDOMAIN)
_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    f"validation is '{_LABEL}')"
)
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_SUBDOMAIN}')"
)

_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_-]+")
INTERFACE_NAME_MESSAGE = (
    "Network interface name can only contain alphabetical characters, numbers, dashes (-) or underscores (_)"
)

# distribution/reference's grammar (reference/regexp.go), ASCII only.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)
_NAME_TOTAL_MAX = 255

#: QEMU ``-cpu`` model names (``Skylake-Server-v4``, ``EPYC``, ``qemu64``): no ``,`` or ``=``, which
#: would start CPU properties.
CPU_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
MAC_ADDRESS = re.compile(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", re.ASCII)
DISK_SERIAL_MAX = 256
_SERIAL = re.compile(r"[A-Za-z0-9_.+-]+", re.ASCII)


def dns1123_label_errors(value: str) -> list[str]:
    """``IsDNS1123Label``'s messages for ``value``."""
    errors: list[str] = []
    if len(value) > DNS1123_LABEL_MAX:
        errors.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _LABEL_RE.fullmatch(value):
        errors.append(_LABEL_MESSAGE)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``'s messages for ``value``."""
    errors: list[str] = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errors.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _SUBDOMAIN_RE.fullmatch(value):
        errors.append(_SUBDOMAIN_MESSAGE)
    return errors


def interface_name_ok(value: str) -> bool:
    """KubeVirt's rule for interface (and so network) names."""
    return _INTERFACE_NAME.fullmatch(value) is not None


def image_reference_errors(reference: str) -> list[str]:
    """Why ``reference`` is no container image reference (``quay.io/containerdisks/fedora:40``)."""
    match = IMAGE_REFERENCE.fullmatch(reference)
    if match is None:
        if reference and IMAGE_REFERENCE.fullmatch(reference.lower()):
            return ["repository name must be lowercase"]
        return ["invalid reference format"]
    if len(match["name"]) > _NAME_TOTAL_MAX:
        return [f"repository name must not be more than {_NAME_TOTAL_MAX} characters"]
    return []


def inner_path_errors(field: str, path: str) -> list[str]:
    """KubeVirt's ``ValidatePath`` for a file inside an image, plus no NUL (``field`` starts each)."""
    if "\x00" in path:
        return [f"{field} must not contain a NUL character"]
    if path == "/":
        return [f"{field} must not point to root"]
    # Go's filepath.Join("/", path) is Clean("/" + path); Python keeps a leading "//", Go does not.
    cleaned = "/" + posixpath.normpath("/" + path).lstrip("/")
    if cleaned != path.removesuffix("/"):
        return [f"{field} must be an absolute path to a file without relative components"]
    return []


def serial_errors(field: str, serial: str) -> list[str]:
    """KubeVirt's disk serial rules (``validateSerialNumValue``/``Length``); ``field`` is the disk's."""
    errors: list[str] = []
    if not serial:
        return errors
    if not _SERIAL.fullmatch(serial):
        errors.append(f"{field} must be made up of the following characters [A-Za-z0-9_.+-], if specified")
    if len(serial) > DISK_SERIAL_MAX:
        errors.append(f"{field} must be less than or equal to {DISK_SERIAL_MAX} in length, if specified")
    return errors
