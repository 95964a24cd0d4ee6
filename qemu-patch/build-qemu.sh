#!/bin/bash
# Builds QEMU 10.0.2 with the rawstor block driver (the patches in this
# directory) into the cache, outside the repository, and prints the
# install prefix. A build is keyed by the patches, this script and the C
# header: when none changed, only the library is refreshed (the binaries
# find it through their rpath, $PREFIX/lib). ccache keeps rebuilds short.
#
# usage: qemu-patch/build-qemu.sh CACHE_DIR
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${1:?usage: build-qemu.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

log() { echo "build-qemu: $*" >&2; }

key=$(cat "$here"/0*.patch "$here/build-qemu.sh" "$repo/include/rawstor.h" | sha256sum | cut -c1-12)
prefix="$cache/qemu-10.0.2-rawstor-$key"

# The library the binaries load: installed into the prefix every time, so a
# rebuilt librawstor is picked up without rebuilding QEMU (the ABI is the
# header's, which is part of the key).
make -s -C "$repo" install PREFIX="$prefix" >&2

if [ -x "$prefix/bin/qemu-img" ] && [ -x "$prefix/bin/qemu-system-x86_64" ]; then
    echo "$prefix"
    exit 0
fi

packages=(ninja-build libglib2.0-dev libpixman-1-dev flex bison ccache python3-venv xz-utils)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

tarball=$("$here/fetch-qemu.sh" "$cache")

# QEMU 10 needs meson >= 1.5; Debian 12 has 1.0.
venv="$cache/meson-venv"
if [ ! -x "$venv/bin/meson" ]; then
    log "making a venv with meson 1.5.0"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check meson==1.5.0 pycotap==1.3.1 >&2
fi

# A fixed path, so that ccache hits survive from one build to the next.
work="$cache/qemu-build"
rm -rf "$work"
mkdir -p "$work/src" "$work/build"
log "unpacking $(basename "$tarball")"
tar -xf "$tarball" -C "$work/src" --strip-components=1
for patch in "$here"/0*.patch; do
    log "applying $(basename "$patch")"
    patch -d "$work/src" -p1 --quiet --forward <"$patch"
done
# Debian's +ds tarball has no firmware blobs to unpack.
sed -i 's/unpack_edk2_blobs = bzip2.found()/unpack_edk2_blobs = false/' "$work/src/meson.build"
# A small machine: a PC with virtio-blk disks and a serial console.
cat >"$work/src/configs/devices/x86_64-softmmu/rawstor.mak" <<'MAK'
CONFIG_I440FX=y
CONFIG_SERIAL_ISA=y
CONFIG_VIRTIO_PCI=y
CONFIG_VIRTIO_BLK=y
MAK

log "configuring"
cd "$work/build"
export CCACHE_BASEDIR="$work" CCACHE_NOHASHDIR=1
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" ../src/configure \
    --prefix="$prefix" --python="$venv/bin/python3" --cc="ccache gcc" \
    --target-list=x86_64-softmmu --without-default-features \
    --without-default-devices --with-devices-x86_64=rawstor \
    --enable-tcg --enable-tools --disable-docs --disable-werror \
    --disable-download --disable-fdt --disable-install-blobs \
    --extra-ldflags="-Wl,-rpath,$prefix/lib" >"$work/configure.log" 2>&1 ||
    { tail -n 30 "$work/configure.log" >&2; exit 1; }

log "building qemu-img, qemu-io, qemu-system-x86_64 (5 minutes cold on 2 cores)"
ninja -C "$work/build" qemu-img qemu-io qemu-system-x86_64 >"$work/build.log" 2>&1 ||
    { grep -A20 '^FAILED' "$work/build.log" | sed -n 1,60p >&2; exit 1; }

mkdir -p "$prefix/bin"
install -m 0755 "$work/build/qemu-img" "$work/build/qemu-io" \
    "$work/build/qemu-system-x86_64" "$prefix/bin/"
rm -rf "$work"
echo "$prefix"
