# Sourced by the fetch scripts: makes Debian source packages of some suites
# available to `apt-get source`.

# Writes /etc/apt/sources.list.d/rawstor-NAME.sources for SUITES and
# refreshes the lists, unless that file already names them.
ensure_deb_src() { # NAME SUITES...
    local file=/etc/apt/sources.list.d/rawstor-$1.sources
    shift
    grep -qsxF "Suites: $*" "$file" && return 0
    echo "adding a deb-src entry for $* ($file)" >&2
    cat >"$file" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $*
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    apt-get update -qq >&2
}
