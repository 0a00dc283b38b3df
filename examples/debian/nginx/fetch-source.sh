#!/bin/sh
# Puts nginx's upstream release tarball next to the Dockerfile, as the
# tutorial's `ADD nginx-<version>.tar.gz /tmp/` expects it: downloaded once
# from the Debian archive (which carries upstream's release unchanged as
# nginx_<version>.orig.tar.gz), checked against its pinned sha256 (the one
# nginx.org publishes for nginx-1.22.1.tar.gz), and cached.
#
#   examples/debian/nginx/fetch-source.sh
#
# Environment:
#   DEBIAN_MIRROR        default: the first Debian mirror apt is configured
#                        with, else http://deb.debian.org/debian
#   RBK_EXAMPLES_CACHE   default: ~/.cache/rbk-examples
set -eu

VERSION=1.22.1
SHA256=9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$HERE/nginx-$VERSION.tar.gz
CACHE=${RBK_EXAMPLES_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rbk-examples}
CACHED=$CACHE/nginx_$VERSION.orig.tar.gz

die() { printf 'fetch-source: %s\n' "$*" >&2; exit 1; }
ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]; }

# The mirror apt uses (deb822 sources or a classic sources.list line).
apt_mirror() {
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list; do
        [ -f "$f" ] || continue
        sed -n -e 's/^URIs: *\([^ ]*\).*/\1/p' -e 's/^deb  *\(\[[^]]*\] *\)\{0,1\}\(http[^ ]*\) .*/\2/p' "$f"
    done | grep -v security | head -n 1
}

if ok "$OUT"; then
    echo "$OUT is there"
    exit 0
fi
if ! ok "$CACHED"; then
    MIRROR=${DEBIAN_MIRROR:-$(apt_mirror)}
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    URL=$MIRROR/pool/main/n/nginx/nginx_$VERSION.orig.tar.gz
    mkdir -p "$CACHE"
    echo "downloading $URL"
    curl -fsSL --retry 3 -o "$CACHED.part" "$URL" || die "cannot download $URL"
    mv "$CACHED.part" "$CACHED"
    ok "$CACHED" || { rm -f "$CACHED"; die "$URL does not have the pinned sha256 $SHA256"; }
fi
cp "$CACHED" "$OUT"
echo "$OUT (sha256 $SHA256)"
