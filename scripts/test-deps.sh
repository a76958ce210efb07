#!/usr/bin/env bash
# Install what the test suite needs on this machine (Debian 12), or stop at once with one line naming
# what is missing and the command that installs it. `make deps` (and so `make test`) runs this before
# creating the Python venv; it is idempotent and takes well under a second when everything is there.
#
# The components to provide are those in VMPLANE_REQUIRE (default qemu,kubectl,etcd,browser), the same setting
# tests/conftest.py reads to fail, rather than skip, the tests that need them.
# A new component is one line in PACKAGES (Debian packages apt can install) and, when it needs more
# than packages, one case in provide() below.
set -euo pipefail
cd "$(dirname "$0")/.."

require="${VMPLANE_REQUIRE-qemu,kubectl,etcd,browser}"

# component -> the Debian packages it needs ("base" is always needed).
declare -A PACKAGES=(
    [base]="python3-venv"
    [qemu]="qemu-system-x86 qemu-utils"
    [kubectl]=""
    [etcd]="etcd-server etcd-client"
    [browser]="chromium chromium-driver"
)

fail() {
    echo "make deps: $*" >&2
    exit 1
}

# Run as root: directly, through passwordless sudo, or not at all (then say what to run).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        return 2
    fi
}

components=(base)
IFS=',' read -r -a listed <<<"$require"
for name in "${listed[@]}"; do
    name="${name// /}"
    [ -n "$name" ] || continue
    [ -n "${PACKAGES[$name]+set}" ] || fail "VMPLANE_REQUIRE names unknown component '$name' (known: ${!PACKAGES[*]})"
    components+=("$name")
done

# -- Debian packages: dpkg first, apt only for what is missing ------------------------------------
missing=()
for name in "${components[@]}"; do
    for package in ${PACKAGES[$name]}; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$package")
    done
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "make deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q >/dev/null &&
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        fail "missing ${missing[*]}; install with: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
fi

# -- what packages do not cover ------------------------------------------------------------------
provide() {
    case "$1" in
    qemu)
        # The QEMU step is scripts/ci-install-qemu.sh (packages, the test guest, the QEMU user);
        # its stamp is stale when the script or the guest recipe changes or the guest is gone.
        local stamp=guest/out/.installed
        if [ -f "$stamp" ] && [ "$stamp" -nt scripts/ci-install-qemu.sh ] && [ "$stamp" -nt guest/build.py ] &&
            [ -f guest/out/vmlinuz ] && [ -f guest/out/initrd.img ] && [ -f guest/out/cmdline ]; then
            return
        fi
        echo "make deps: scripts/ci-install-qemu.sh (QEMU and the test guest)"
        if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
            bash scripts/ci-install-qemu.sh || fail "scripts/ci-install-qemu.sh failed; run it to see why"
        else
            fail "the test guest is not built; build it with: sudo bash scripts/ci-install-qemu.sh"
        fi
        touch "$stamp"
        ;;
    kubectl)
        command -v kubectl >/dev/null ||
            fail "kubectl is missing; install with: curl -fsSLo /usr/local/bin/kubectl" \
                "https://dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubectl && chmod 0755 /usr/local/bin/kubectl"
        ;;
    esac
}

for name in "${components[@]}"; do
    provide "$name"
done
