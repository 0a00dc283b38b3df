#!/bin/sh
# Makes the base images the examples build on, without any registry:
#
#   localhost/busybox:latest   Debian's busybox-static plus its applet links
#   localhost/debian:bookworm  `debootstrap --variant=minbase` from the Debian archive
#
# Each root filesystem is tarred with numeric owners and `rbk import`ed. An
# image that is already in the store is left alone, so running this again
# does nothing. The tarballs are kept in $RBK_BASES_CACHE (default
# ~/.cache/rbk-bases) so a fresh store gets its bases back in seconds.
#
# Usage (as root):  examples/bases/make-bases.sh [busybox] [debian]
# Environment:
#   RBK              the rbk binary to use (default: rbk on $PATH)
#   RBK_ROOT         the store (as for rbk itself)
#   RBK_BASES_CACHE  where the base tarballs are kept
#   DEBIAN_MIRROR    default http://deb.debian.org/debian
#   RBK_IMPORT_COMPRESSION  layer compression for rbk import (default gzip)
set -eu

RBK=${RBK:-rbk}
CACHE=${RBK_BASES_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/rbk-bases}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
COMPRESSION=${RBK_IMPORT_COMPRESSION:-gzip}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'make-bases: %s\n' "$*" >&2; exit 1; }

have_image() { "$RBK" inspect "$1" >/dev/null 2>&1; }

# Tars directory $1 into $2 with numeric root ownership preserved, entries
# sorted so the same tree gives the same tarball.
tar_rootfs() {
    tar --numeric-owner --sort=name --mtime='2000-01-01 00:00:00Z' \
        -C "$1" -cf "$2.part.$$" . && mv "$2.part.$$" "$2"
}

# Holds an exclusive lock on making tarball $1 (released at exit or by
# unlock_tarball): two runs at once (parallel tests) make it once, the
# second one waits and reuses it.
lock_tarball() {
    mkdir -p "$CACHE"
    exec 9>"$1.lock"
    if command -v flock >/dev/null; then flock 9; fi
}
unlock_tarball() { exec 9>&-; }

make_busybox() {
    ref=localhost/busybox:latest
    if have_image "$ref"; then say "$ref is already in the store"; return; fi
    tarball=$CACHE/busybox.tar
    lock_tarball "$tarball"
    if [ ! -s "$tarball" ]; then
        bb=/bin/busybox
        # The rootfs needs a static busybox: the image has no libc.
        if ! [ -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
            command -v apt-get >/dev/null || die "need Debian's busybox-static package"
            say "installing busybox-static"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static >&2
        fi
        ldd "$bb" >/dev/null 2>&1 && die "$bb is not statically linked (install busybox-static)"
        dir=$(mktemp -d "${TMPDIR:-/tmp}/rbk-busybox.XXXXXX")
        trap 'rm -rf "$dir"' EXIT
        say "making the busybox rootfs in $dir"
        mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/etc" \
            "$dir/root" "$dir/tmp" "$dir/var/www" "$dir/home"
        chmod 1777 "$dir/tmp"
        chmod 700 "$dir/root"
        cp "$bb" "$dir/bin/busybox"
        # One symlink per applet, where busybox itself would install it.
        "$bb" --list-full | while read -r applet; do
            [ "$applet" = bin/busybox ] && continue
            mkdir -p "$dir/$(dirname "$applet")"
            ln -sf /bin/busybox "$dir/$applet"
        done
        cat >"$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
        cat >"$dir/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
EOF
        mkdir -p "$CACHE"
        tar_rootfs "$dir" "$tarball"
        rm -rf "$dir"
        trap - EXIT
    fi
    unlock_tarball
    say "importing $ref"
    "$RBK" import --compression "$COMPRESSION" "$tarball" "$ref" --change 'CMD ["/bin/sh"]' >/dev/null
}

make_debian() {
    ref=localhost/debian:$SUITE
    if have_image "$ref"; then say "$ref is already in the store"; return; fi
    tarball=$CACHE/debian-$SUITE.tar
    lock_tarball "$tarball"
    if [ ! -s "$tarball" ]; then
        if ! command -v debootstrap >/dev/null; then
            command -v apt-get >/dev/null || die "need debootstrap"
            say "installing debootstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
        fi
        dir=$(mktemp -d "${TMPDIR:-/tmp}/rbk-debian.XXXXXX")
        trap 'rm -rf "$dir"' EXIT
        say "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
        debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >&2
        # What Docker's debian image leaves out: downloaded packages, apt
        # lists (every Dockerfile runs apt-get update anyway), logs, device
        # nodes (the sandbox brings its own /dev).
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* \
            "$dir"/var/log/* "$dir"/dev/* "$dir"/proc/* "$dir"/sys/* "$dir"/run/*
        # Containers do not start services at install time; tell dpkg so
        # (the same policy-rc.d the docker images ship).
        printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
        chmod 755 "$dir/usr/sbin/policy-rc.d"
        # Keep apt's downloaded .debs out of image layers.
        cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
        mkdir -p "$CACHE"
        tar_rootfs "$dir" "$tarball"
        rm -rf "$dir"
        trap - EXIT
    fi
    unlock_tarball
    say "importing $ref"
    "$RBK" import --compression "$COMPRESSION" "$tarball" "$ref" --change 'CMD ["bash"]' >/dev/null
}

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and numeric owners need it)"
command -v "$RBK" >/dev/null || die "rbk not found (set RBK=/path/to/rbk)"
[ $# -gt 0 ] || set -- busybox debian
for base in "$@"; do
    case $base in
        busybox) make_busybox ;;
        debian) make_debian ;;
        *) die "unknown base $base (busybox or debian)" ;;
    esac
done
