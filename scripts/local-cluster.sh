#!/bin/sh
# A local multi-process cluster on loopback: an API server, two controllers, three node agents
# (node01..node03), each with its own data directory under DIR. Prints the kubeconfig; Ctrl-C stops all.
# --store etcd: a 3-member etcd cluster on loopback (needs etcd on PATH) and two API servers over it.
# Usage: scripts/local-cluster.sh DIR [--hypervisor simulated|qemu] [--store sqlite|etcd]
set -eu
if [ $# -lt 1 ]; then
    echo "usage: $0 DIR [--hypervisor simulated|qemu] [--store sqlite|etcd]" >&2
    exit 2
fi
dir=$1
shift
exec "${PYTHON:-python3}" -m vmplane.cli.main dev-cluster --dir "$dir" "$@"
