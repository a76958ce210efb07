#!/usr/bin/env bash
# Install QEMU (Debian qemu-system-x86 + qemu-utils), create the system user guests run as
# (vmplane-qemu, scripts/create-qemu-user.sh) and build the test guest used by tests/e2e.
# CI runs this before `pytest -m e2e`; it is safe to run again (downloads are cached in guest/cache/).
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y qemu-system-x86 qemu-utils
scripts/create-qemu-user.sh

python="${PYTHON:-python3}"
if [ -x .venv/bin/python ]; then
    python=.venv/bin/python
fi
"$python" guest/build.py --out guest/out
qemu-system-x86_64 --version | head -1
ls -l guest/out
