#!/bin/bash
# Downloads the source of QEMU 10.0.2 (Debian bookworm-backports, the
# version of the installed qemu-img) into the cache, once. The .dsc of that
# version may be missing from the mirror while the orig tarball downloads:
# apt's exit code is ignored and the tarball checked instead.
#
# usage: qemu-patch/fetch-qemu.sh CACHE_DIR     prints the tarball's path
set -euo pipefail

cache=${1:?usage: fetch-qemu.sh CACHE_DIR}
version=10.0.2+ds
debian_version="1:$version-2+deb13u1~bpo12+1"
tarball="$cache/qemu_$version.orig.tar.xz"

if [ -s "$tarball" ] && xz -t "$tarball" 2>/dev/null; then
    echo "$tarball"
    exit 0
fi
mkdir -p "$cache"
source "$(dirname "$0")/../scripts/deb-src.sh"
ensure_deb_src qemu-src bookworm-backports

work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source --download-only "qemu=$debian_version" >&2) || true
if [ ! -s "$work/qemu_$version.orig.tar.xz" ]; then
    echo "fetch-qemu: apt-get source did not download qemu_$version.orig.tar.xz" >&2
    exit 1
fi
mv "$work/qemu_$version.orig.tar.xz" "$tarball"
echo "$tarball"
