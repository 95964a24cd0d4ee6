#!/bin/bash
# Fetches what the VM boot test needs into the cache, once: Debian's
# kernel (vmlinuz and the virtio modules), busybox, SeaBIOS and QEMU's
# option ROMs. Prints the directory that holds them:
#   vmlinuz, modules/*.ko, busybox, bios/{bios-256k.bin,linuxboot_dma.bin,kvmvapic.bin}
#
# usage: qemu-patch/vm-assets.sh CACHE_DIR
set -euo pipefail

cache=${1:?usage: vm-assets.sh CACHE_DIR}
# The test packs an initramfs with cpio.
if ! command -v cpio >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cpio >&2
fi
kernel=$(apt-cache depends linux-image-amd64 | sed -n 's/.*Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | sed -n 1p)
[ -n "$kernel" ] || { echo "vm-assets: no linux-image-amd64 in the apt lists" >&2; exit 1; }
assets="$cache/vm-$kernel"
if [ -f "$assets/.ready" ]; then
    echo "$assets"
    exit 0
fi

work=$(mktemp -d "$cache/vm-fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "vm-assets: downloading $kernel, busybox-static, seabios, qemu-system-data" >&2
(cd "$work" && apt-get download "$kernel" busybox-static seabios qemu-system-data >&2)
for deb in "$work"/*.deb; do
    dpkg-deb -x "$deb" "$work/root"
done

rm -rf "$assets"
mkdir -p "$assets/modules" "$assets/bios"
cp "$work"/root/boot/vmlinuz-* "$assets/vmlinuz"
for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    found=$(find "$work/root/lib/modules" -name "$module.ko*" | sed -n 1p)
    [ -n "$found" ] || { echo "vm-assets: $kernel has no $module module" >&2; exit 1; }
    case $found in
        *.xz) xz -dc "$found" >"$assets/modules/$module.ko" ;;
        *.zst) zstd -qdc "$found" >"$assets/modules/$module.ko" ;;
        *) cp "$found" "$assets/modules/$module.ko" ;;
    esac
done
cp "$work/root/bin/busybox" "$assets/busybox"
cp "$work/root/usr/share/seabios/bios-256k.bin" "$assets/bios/"
for rom in linuxboot_dma.bin kvmvapic.bin; do
    cp "$(find "$work/root/usr/share" -name "$rom" | sed -n 1p)" "$assets/bios/"
done
touch "$assets/.ready"
echo "$assets"
