#!/usr/bin/env bash
# Build a Debian trixie chroot holding GIMP 3.0 and what the GIMP plug-in and its tests need
# (python3-gi, python3-zmq, python3-msgpack; Xvfb and xdotool for the dialog). Debian 12 ships
# only GIMP 2.10, so the GIMP end-to-end tests run GIMP 3 from this chroot.
#
#   tests/hosts/build_gimp_chroot.sh [DIR]
#
# DIR defaults to $ANYCOST_GIMP_CHROOT, else /var/cache/anycost/gimp3-chroot. A finished chroot
# holds DIR/.anycost-gimp-chroot-ready listing its packages and is reused as is (a chroot built
# with an older list gets the missing packages). A new build goes to DIR.partial first and is
# renamed when complete, so an interrupted build never looks finished. Needs root, debootstrap
# and apt access (about 2 minutes and 2.2 GB). ANYCOST_DEBIAN_MIRROR overrides the mirror.
set -euo pipefail

DIR=${1:-${ANYCOST_GIMP_CHROOT:-/var/cache/anycost/gimp3-chroot}}
MIRROR=${ANYCOST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
MARKER=.anycost-gimp-chroot-ready
PACKAGES="gimp python3 python3-gi gir1.2-gimp-3.0 python3-zmq python3-msgpack xvfb xauth xdotool"

ready() { [ -f "$DIR/$MARKER" ] && [ "$(cat "$DIR/$MARKER")" = "$PACKAGES" ]; }

if ready; then
    echo "GIMP chroot ready: $DIR"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "build_gimp_chroot: needs root (debootstrap and chroot)" >&2
    exit 2
fi

mkdir -p "$(dirname "$DIR")"
# One build at a time: a second caller waits, then finds the finished chroot.
exec 9>"$DIR.lock"
flock 9
if ready; then
    echo "GIMP chroot ready: $DIR"
    exit 0
fi

mounted=()
cleanup() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount -l "${mounted[$i]}" 2>/dev/null || true
    done
    mounted=()
}
trap cleanup EXIT
# A build killed hard may have left proc/dev mounted: unmount before deleting, and never cross into
# another file system while deleting.
unmount_below() {
    local m
    for m in $(awk -v d="$1" 'index($2, d "/") == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
}
install_packages() {  # ROOT
    mount -t proc proc "$1/proc" && mounted+=("$1/proc")
    mount --bind /dev "$1/dev" && mounted+=("$1/dev")
    cp /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
    # A test host, not a system to keep: no fsync per file, no translations, manuals or docs (GIMP's
    # translations alone are over 100 MB).
    mkdir -p "$1/etc/dpkg/dpkg.cfg.d" "$1/etc/apt/apt.conf.d"
    printf '%s\n' force-unsafe-io 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/doc/*' 'path-exclude=/usr/share/help/*' \
        > "$1/etc/dpkg/dpkg.cfg.d/anycost-test-host"
    echo 'Acquire::Languages "none";' > "$1/etc/apt/apt.conf.d/99anycost-test-host"
    echo "build_gimp_chroot: installing $PACKAGES"
    chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends $PACKAGES && apt-get clean"
    chroot "$1" gimp-console-3.0 --version
    cleanup
}

if [ -f "$DIR/$MARKER" ]; then
    # Built before with fewer packages: add what is missing.
    install_packages "$DIR"
    echo "$PACKAGES" > "$DIR/$MARKER"
    echo "GIMP chroot ready: $DIR"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "build_gimp_chroot: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 2
fi
WORK="$DIR.partial"
unmount_below "$WORK"
rm -rf --one-file-system "$WORK"
echo "build_gimp_chroot: debootstrap trixie into $WORK"
debootstrap --variant=minbase trixie "$WORK" "$MIRROR"
install_packages "$WORK"
echo "$PACKAGES" > "$WORK/$MARKER"
unmount_below "$DIR"
rm -rf --one-file-system "$DIR"
mv "$WORK" "$DIR"
echo "GIMP chroot ready: $DIR"
