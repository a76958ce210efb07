#!/usr/bin/env python3
"""Build the tiny Linux guest that vmplane's end-to-end tests boot under QEMU.

Run as ``python guest/build.py --out guest/out``. It downloads Debian's stock kernel and
``busybox-static`` with ``apt-get download`` (cached under ``guest/cache/``), extracts them with
``dpkg-deb``, and writes:

* ``<out>/vmlinuz``: the Debian kernel, unchanged;
* ``<out>/initrd.img``: a gzip'd cpio (newc) with busybox, the virtio, SCSI, SATA and CD-ROM modules
  and their dependencies,
  and an ``/init`` that starts a shell on the serial port (for interactive consoles) and a web
  server on port 80 of its first NIC (10.0.2.15, for port-forward), onlines
  hot-plugged CPUs and memory and prints a status line to the serial
  console (see ``INIT_SCRIPT``), and ``/bin/qga-stub`` on the guest agent channel (``QGA_STUB``);
* ``<out>/cmdline``: the recommended kernel command line (``CMDLINE``).

Debian's kernel package ships no ``modules.dep`` (``depmod`` runs at install time, and ``kmod`` may be
absent), so dependencies are resolved from each module's own ``.modinfo`` ``depends=`` field, which is
what ``depmod`` reads too. The cpio archive is written here because the ``cpio`` tool is often missing.
"""

from __future__ import annotations

import argparse
import gzip
import io
import lzma
import shutil
import struct
import subprocess
from pathlib import Path

__all__ = ["CMDLINE", "MODULES", "build"]

#: The kernel command line the guest is meant to boot with. ``online_movable`` makes hot-plugged DIMMs
#: removable again; ``quiet`` keeps kernel messages from splitting the status lines.
CMDLINE = "console=ttyS0 quiet loglevel=3 memhp_default_state=online_movable panic=0"

#: Modules loaded by /init, in this order after their dependencies: virtio disks and NICs, SCSI disks
#: on virtio-scsi (``sda``), CD-ROM drives on SATA or SCSI (``sr0``), and the virtio-serial console
#: the guest agent's channel is on.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "sd_mod", "ahci", "sr_mod", "virtio_console")

STATUS_PREFIX = "VMPLANE-STATUS"

# The guest's /init. It polls four times a second and prints a status line whenever something
# changed, and at least once a second, so tests see hotplug latency at 0.25 s resolution.
INIT_SCRIPT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
for m in $(cat /etc/modules.load); do insmod "/lib/modules/$m" || echo "VMPLANE-ERROR insmod $m"; done
# The first NIC gets QEMU user networking's guest address, and a web server answers on port 80, so
# that port-forward has a service to reach.
ip link set lo up
if ip link set eth0 up 2>/dev/null; then
  ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
fi
mkdir -p /www && echo "vmplane-guest" > /www/index.html && httpd -p 80 -h /www
hostname vmplane-guest
# A stub of qemu-guest-agent on the org.qemu.guest_agent.0 channel (respawned when it exits).
(while true; do /bin/qga-stub; sleep 1; done) &
# A shell on the serial port for interactive consoles (respawned when it exits).
(while true; do setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'; done) &
echo "VMPLANE-BOOTED"
last=""
n=0
while true; do
  for f in /sys/devices/system/cpu/cpu[0-9]*/online; do
    [ "$(cat "$f" 2>/dev/null)" = 0 ] && echo 1 > "$f" 2>/dev/null
  done
  for f in /sys/devices/system/memory/memory*/state; do
    [ "$(cat "$f" 2>/dev/null)" = offline ] && echo online_movable > "$f" 2>/dev/null
  done
  vcpus=$(grep -c '^processor' /proc/cpuinfo)
  mem=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)
  blk=""
  media=""
  for d in /sys/block/*; do
    [ -e "$d" ] || continue
    d=${d##*/}
    case "$d" in loop*|ram*) continue;; esac
    blk="${blk:+$blk,}$d"
    # A CD-ROM drive's medium: its size in 512-byte sectors once a read of it succeeds, "-" when it
    # holds none. The open makes the kernel notice a changed medium (sr does not poll by default).
    case "$d" in sr*)
      if dd if=/dev/$d of=/dev/null bs=2048 count=1 2>/dev/null; then s=$(cat /sys/block/$d/size); else s=-; fi
      media="${media:+$media,}$d:$s";;
    esac
  done
  net=""
  carrier=""
  for i in /sys/class/net/*; do
    [ -e "$i" ] || continue
    i=${i##*/}
    [ "$i" = lo ] && continue
    [ "$(cat /sys/class/net/$i/flags)" = 0x1002 ] && ip link set "$i" up 2>/dev/null
    net="${net:+$net,}$i"
    carrier="${carrier:+$carrier,}$i:$(cat /sys/class/net/$i/carrier 2>/dev/null || echo -)"
  done
  now="vcpus=$vcpus memtotal_kb=$mem blk=${blk:--} net=${net:--} carrier=${carrier:--} media=${media:--}"
  n=$((n + 1))
  if [ "$now" != "$last" ] || [ "$n" -ge 4 ]; then
    read up rest < /proc/uptime
    echo "VMPLANE-STATUS uptime=$up $now"
    last="$now"
    n=0
  fi
  sleep 0.25
done
"""

#: ``/etc/os-release`` of the test guest, which the guest agent stub reports.
OS_RELEASE = """ID=vmplane-guest
NAME="vmplane test guest"
PRETTY_NAME="vmplane test guest (busybox)"
VERSION="1"
VERSION_ID="1"
"""

# A STUB of qemu-guest-agent, not qemu-guest-agent: Debian's build links glib and friends dynamically,
# so the test guest runs this busybox script instead. It answers, one request per line, the commands
# vmplane's node agent sends, with real values read in the guest (os-release, uname, hostname, date,
# /proc/mounts with df, /sys/class/net with ip); any other command is CommandNotFound, as qemu-ga
# answers. Answers echo the request's "id" and the sync answer starts with 0xFF, as qemu-ga's do.
QGA_STUB = r"""#!/bin/busybox sh
port=""
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = org.qemu.guest_agent.0 ] && port="/dev/${p##*/}"
done
[ -c "$port" ] || { sleep 5; exit 1; }
exec 3<>"$port"
q() { printf '"%s"' "$(printf '%s' "$1" | tr -d '"\\')"; }
answer() { printf '{"return": %s%s}\n' "$1" "${rid:+, \"id\": $rid}" >&3; }
osinfo() {
  . /etc/os-release
  printf '{"id": %s, "name": %s, "pretty-name": %s, "version": %s, "version-id": %s, ' \
    "$(q "$ID")" "$(q "$NAME")" "$(q "$PRETTY_NAME")" "$(q "$VERSION")" "$(q "$VERSION_ID")"
  printf '"kernel-release": %s, "kernel-version": %s, "machine": %s}' \
    "$(q "$(uname -r)")" "$(q "$(uname -v)")" "$(q "$(uname -m)")"
}
timezone() {
  z=$(date +%z); s=${z%????}; h=${z#?}; m=${h#??}; h=${h%??}
  off=$(( (${h#0} * 3600 + ${m#0} * 60) )); [ "$s" = - ] && off=$((-off))
  printf '{"zone": %s, "offset": %d}' "$(q "$(date +%Z)")" "$off"
}
fsinfo() {
  sep=""; printf '['
  while read -r dev mnt type rest; do
    case "$type" in proc|sysfs|devtmpfs|devpts|cgroup*|debugfs|tracefs|securityfs) continue;; esac
    set -- $(df -k -P "$mnt" 2>/dev/null | sed -n '2p')
    printf '%s{"name": %s, "mountpoint": %s, "type": %s, "total-bytes": %d, "used-bytes": %d, "disk": []}' \
      "$sep" "$(q "$dev")" "$(q "$mnt")" "$(q "$type")" "$(( ${2:-0} * 1024 ))" "$(( ${3:-0} * 1024 ))"
    sep=", "
  done < /proc/mounts
  printf ']'
}
interfaces() {
  sep=""; printf '['
  for i in /sys/class/net/*; do
    i=${i##*/}; ips=""
    for a in $(ip -o addr show dev "$i" | sed -n 's/.* inet6\{0,1\} \([^ ]*\).*/\1/p'); do
      t=ipv4; case "$a" in *:*) t=ipv6;; esac
      ips="${ips:+$ips, }{\"ip-address-type\": \"$t\", \"ip-address\": $(q "${a%/*}"), \"prefix\": ${a#*/}}"
    done
    printf '%s{"name": %s, "hardware-address": %s, "ip-addresses": [%s]}' \
      "$sep" "$(q "$i")" "$(q "$(cat "/sys/class/net/$i/address")")" "$ips"
    sep=", "
  done
  printf ']'
}
while true; do
  while read -r line <&3; do
    rid=$(printf '%s' "$line" | sed -n 's/.*"id": *\("[^"]*"\).*/\1/p')
    case "$line" in
      *'"guest-sync-delimited"'*|*'"guest-sync"'*)
        sid=$(printf '%s' "$line" | sed -n 's/.*"arguments": *{ *"id": *\([0-9]*\).*/\1/p')
        printf '\377' >&3; answer "${sid:-0}";;
      *'"guest-ping"'*) answer '{}';;
      *'"guest-info"'*)
        answer '{"version": "vmplane-qga-stub", "supported_commands": [{"name": "guest-ping", "enabled": true}, {"name": "guest-get-osinfo", "enabled": true}]}';;
      *'"guest-get-osinfo"'*) answer "$(osinfo)";;
      *'"guest-get-host-name"'*) answer "{\"host-name\": $(q "$(hostname)")}";;
      *'"guest-get-timezone"'*) answer "$(timezone)";;
      *'"guest-get-users"'*) answer '[]';;
      *'"guest-get-fsinfo"'*) answer "$(fsinfo)";;
      *'"guest-network-get-interfaces"'*) answer "$(interfaces)";;
      *'"guest-shutdown"'*'"reboot"'*) echo "VMPLANE-QGA guest-shutdown reboot" > /dev/ttyS0; sync; reboot -f;;
      *'"guest-shutdown"'*) sync; poweroff -f;;
      *) printf '{"error": {"class": "CommandNotFound", "desc": "not in the qga stub"}%s}\n' "${rid:+, \"id\": $rid}" >&3;;
    esac
  done
  sleep 0.5  # no host end connected: reads see end of file until one is
done
"""


def _run(*argv: str, cwd: Path | None = None) -> str:
    done = subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout


def kernel_package() -> str:
    """The concrete ``linux-image-<version>-amd64`` package the meta-package depends on."""
    for line in _run("apt-cache", "depends", "linux-image-amd64").splitlines():
        dep = line.strip().removeprefix("Depends:").strip()
        if line.strip().startswith("Depends:") and dep.startswith("linux-image-"):
            return dep
    raise SystemExit("cannot resolve linux-image-amd64 with apt-cache depends")


def fetch(package: str, cache: Path) -> Path:
    """The package's extracted tree, downloading and extracting it once."""
    tree = cache / "tree" / package
    if (tree / ".done").exists():
        return tree
    debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        _run("apt-get", "download", package, cwd=cache)
        debs = sorted(cache.glob(f"{package}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download {package} produced no .deb")
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    _run("dpkg-deb", "-x", str(debs[-1]), str(tree))
    (tree / ".done").touch()
    return tree


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    return lzma.decompress(data) if path.name.endswith(".xz") else data


def modinfo_depends(image: bytes) -> list[str]:
    """The ``depends=`` list from an ELF64 module's ``.modinfo`` section."""
    (shoff,) = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", image, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", image, shoff + i * shentsize)
        return name, offset, size

    _, strtab, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        end = image.index(b"\0", strtab + name)
        if image[strtab + name : end] == b".modinfo":
            for entry in image[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    return [d for d in entry[len(b"depends=") :].decode().split(",") if d]
            return []
    return []


def resolve_modules(moddir: Path, wanted: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """``(file name, module image)`` for ``wanted`` and their dependencies, dependencies first."""
    index: dict[str, Path] = {}
    for path in moddir.rglob("*.ko*"):
        index[path.name.split(".ko")[0].replace("-", "_")] = path
    builtin = {
        Path(line).name.split(".ko")[0].replace("-", "_")
        for line in (moddir / "modules.builtin").read_text().split()
    }
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in index:
            raise SystemExit(f"module {name} not found in {moddir}")
        image = _read_module(index[name])
        for dep in modinfo_depends(image):
            visit(dep)
        order.append((f"{name}.ko", image))

    for name in wanted:
        visit(name)
    return order


class Cpio:
    """A writer for the ``newc`` cpio format the kernel unpacks as an initramfs."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        self._out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + encoded)
        self._out.write(b"\0" * (-(110 + len(encoded)) % 4))
        self._out.write(data + b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def initramfs(busybox: bytes, modules: list[tuple[str, bytes]]) -> bytes:
    archive = Cpio()
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "lib", "lib/modules", "root"):
        archive.directory(d)
    archive.chardev("dev/console", 5, 1)
    archive.file("bin/busybox", busybox, 0o755)
    archive.symlink("bin/sh", "busybox")
    for name, image in modules:
        archive.file(f"lib/modules/{name}", image)
    archive.file("etc/modules.load", "".join(f"{name}\n" for name, _ in modules).encode())
    archive.file("init", INIT_SCRIPT.encode(), 0o755)
    archive.file("bin/qga-stub", QGA_STUB.encode(), 0o755)
    archive.file("etc/os-release", OS_RELEASE.encode())
    return gzip.compress(archive.finish(), compresslevel=6, mtime=0)


def build(out: Path, cache: Path) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    kpkg = kernel_package()
    ktree = fetch(kpkg, cache)
    btree = fetch("busybox-static", cache)
    (version,) = [p.name for p in (ktree / "lib" / "modules").iterdir()]
    modules = resolve_modules(ktree / "lib" / "modules" / version, MODULES)
    busybox = (btree / "bin" / "busybox").read_bytes()
    shutil.copyfile(ktree / "boot" / f"vmlinuz-{version}", out / "vmlinuz")
    (out / "initrd.img").write_bytes(initramfs(busybox, modules))
    (out / "cmdline").write_text(CMDLINE + "\n")
    print(f"guest: kernel {version}, modules {' '.join(n for n, _ in modules)} -> {out}")


def main(argv: list[str] | None = None) -> None:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=here / "out")
    parser.add_argument("--cache", type=Path, default=here / "cache")
    args = parser.parse_args(argv)
    build(args.out.resolve(), args.cache.resolve())


if __name__ == "__main__":
    main()
