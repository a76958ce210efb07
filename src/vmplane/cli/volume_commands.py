"""virtctl's ``addvolume`` and ``removevolume``: hot-plug a claim into a running guest, or unplug it.

As virtctl: ``vmplane addvolume NAME --volume-name=CLAIM`` asks the VMI's ``addvolume`` subresource
(the guest gets it until it stops), ``--persist`` the VM's (its template keeps it, and the running
guest gets it too). The disk is named after the volume and sits on the ``scsi`` bus unless ``--bus``
says ``virtio``; ``--serial`` and ``--cache`` are passed on. The API answers 202 and the VMI's
``status.volumeStatus`` shows the volume reaching the guest.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vmplane.api import names
from vmplane.cli.client import ApiError
from vmplane.cli.flags import add_connection_flags, client_from

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add addvolume and removevolume."""
    for command, text in (
        ("addvolume", "hot-plug a persistent volume claim (or DataVolume) into a running VM or VMI"),
        ("removevolume", "unplug a hot-plugged volume from a running VM or VMI"),
    ):
        parser = subparsers.add_parser(command, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("name", metavar="NAME", help="the VMI (or, with --persist, the VM)")
        parser.add_argument(
            "--volume-name", required=True, help="the claim's name; the volume and disk get it"
        )
        parser.add_argument("--persist", action="store_true", help="also change the VM's template")
        parser.add_argument("--dry-run", action="store_true", help="only check that the request is allowed")
        if command == "addvolume":
            parser.add_argument("--bus", choices=("scsi", "virtio"), default="scsi", help="default: scsi")
            parser.add_argument("--disk-type", choices=("disk", "lun"), default="disk")
            parser.add_argument("--serial", help="the disk's serial number")
            parser.add_argument("--cache", choices=("none", "writethrough", "writeback"))
        add_connection_flags(parser)
        parser.set_defaults(func=_submit, command=command)


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"name": args.volume_name}
    if args.command == "addvolume":
        target: dict[str, Any] = {"bus": args.bus}
        disk: dict[str, Any] = {"name": args.volume_name, args.disk_type: target}
        if args.serial is not None:
            disk["serial"] = args.serial
        if args.cache is not None:
            disk["cache"] = args.cache
        body |= {"disk": disk, "volumeSource": {"persistentVolumeClaim": {"claimName": args.volume_name}}}
    if args.dry_run:
        body["dryRun"] = ["All"]
    return body


def _submit(args: argparse.Namespace) -> int:
    for flag, value, errors in (
        ("NAME", args.name, names.dns1123_subdomain_errors(args.name)),
        ("--volume-name", args.volume_name, names.dns1123_label_errors(args.volume_name)),
    ):
        if errors:
            print(f"error: {flag}: invalid value {value!r}: {', '.join(errors)}", file=sys.stderr)
            return 1
    kind = "virtualmachines" if args.persist else "virtualmachineinstances"
    try:
        client = client_from(args)
        path = (
            f"/apis/subresources.kubevirt.io/v1/namespaces/{client.config.namespace}"
            f"/{kind}/{args.name}/{args.command}"
        )
        client.request("PUT", path, _body(args))
    except ApiError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    what = "add" if args.command == "addvolume" else "remove"
    suffix = " (dry run)" if args.dry_run else ""
    # virtctl's wording.
    print(
        f"Successfully submitted {what} volume request to {'VM' if args.persist else 'VMI'} {args.name} "
        f"for volume {args.volume_name}{suffix}"
    )
    return 0
