#!/usr/bin/env bash
# Create the unprivileged system user QEMU guests run as (vmplane-qemu); a no-op when it exists.
# `vmplane serve` started as root refuses to run guests until this user exists. Called by
# scripts/ci-install-qemu.sh; safe to run again.
set -euo pipefail

user="${VMPLANE_QEMU_USER:-vmplane-qemu}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
if getent passwd "$user" >/dev/null; then
    exit 0
fi
$sudo useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell /usr/sbin/nologin --comment "vmplane QEMU guests" "$user"
echo "created system user $user"
