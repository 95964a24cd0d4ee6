#!/bin/bash
# Fetch and configure the source of the fio that /usr/bin/fio is, so the
# engine compiles against the same struct layouts. The tree lives outside the
# repository (a cache shared by clones); configure takes seconds.
#
# usage: fio-engine/fetch-fio.sh CACHE_DIR     prints the configured tree's path
set -euo pipefail

cache=${1:?usage: fetch-fio.sh CACHE_DIR}
command -v fio >/dev/null || { echo "fetch-fio: fio is not installed (apt-get install fio)" >&2; exit 1; }
version=$(fio --version | sed 's/^fio-//')
tree="$cache/fio-$version"

if [ -f "$tree/config-host.h" ] && [ -f "$tree/ioengines.h" ]; then
    echo "$tree"
    exit 0
fi

mkdir -p "$cache"
source "$(dirname "$0")/../scripts/deb-src.sh"
ensure_deb_src deb-src bookworm bookworm-updates

work=$(mktemp -d "$cache/fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source --download-only "fio=$(dpkg-query -W -f '${Version}' fio)" >&2 \
    || apt-get source --download-only fio >&2)
orig=$(ls "$work"/fio_*.orig.tar.* | sed -n 1p)
mkdir -p "$work/src"
tar -xf "$orig" -C "$work/src" --strip-components=1
(cd "$work/src" && ./configure --disable-native >/dev/null)
rm -rf "$tree"
mv "$work/src" "$tree"
echo "$tree"
