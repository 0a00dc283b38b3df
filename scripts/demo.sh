#!/bin/sh
# rbk in one command, on a fresh Debian (bookworm) machine, as root:
#
#   sh scripts/demo.sh
#
# 1. installs the Debian packages it needs (and Rust, if cargo is missing),
# 2. builds rbk in release mode,
# 3. makes the base images (busybox, debian:bookworm) without any registry
#    and fetches nginx's source tarball (checked against its sha256),
# 4. builds every runnable example at once from examples/debian/rbk.toml:
#    nginx compiled from source (two stages, and the one-stage image for
#    comparison), Tomcat, MariaDB,
# 5. prints the build graph (the images share their first steps),
# 6. starts nginx detached with port 80 published and fetches its page,
# 7. starts Tomcat on port 8080 and fetches its default page,
# 8. starts MariaDB with a password and a data directory, logs in, and
#    checks a wrong password is refused,
# 9. stops and removes the three, rebuilds (every step CACHED) and prints a
#    summary with the image sizes.
#
# Environment: RBK_ROOT (the store, default /var/lib/rbk), DEMO_PASSWORD,
# DEMO_DATADIR (MariaDB's data, default /var/tmp/rbk-demo-mariadb).
set -eu

cd "$(dirname "$0")/.."
REPO=$(pwd)
PASSWORD=${DEMO_PASSWORD:-rbk-demo-secret}
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/rbk-demo.XXXXXX")
CONTAINERS="demo-nginx demo-tomcat demo-mariadb"
DATADIR=${DEMO_DATADIR:-/var/tmp/rbk-demo-mariadb}

if [ -t 1 ]; then B=$(printf '\033[1m'); N=$(printf '\033[0m'); else B=; N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
# Prints a command, then runs it.
show() { printf '$ %s\n' "$*"; "$@"; }
die() { printf '\ndemo: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

# Removes the demo's containers (stopping them first), quietly.
remove_containers() {
    for c in $CONTAINERS; do
        "${RBK:-rbk}" rm -f "$c" >/dev/null 2>&1 || true
    done
}
trap 'remove_containers' EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run me as root (containers and debootstrap need it): sudo sh scripts/demo.sh"
START=$(now)

# The Debian packages the demo needs: the bases (busybox-static,
# debootstrap), the default network of RUN and `run -p` (slirp4netns),
# fetching pages (curl), and a C toolchain for cargo.
PKGS="busybox-static debootstrap slirp4netns curl ca-certificates gcc libc6-dev tar"
# What the demo needs of the host, as `rbk system info` names it: RUN
# steps in namespaces under seccomp, on the default (private) network.
# (cli/tests/it/hostinfo.rs checks PKGS provides every one of these.)
NEEDS="namespaces,seccomp,slirp4netns,tun"

step "1/9 Debian packages: $PKGS"
missing=
for p in $PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    show apt-get update -q
    # shellcheck disable=SC2086
    show apt-get install -y -q --no-install-recommends $missing
else
    echo "all installed"
fi
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo not found: installing Rust with rustup (minimal profile)"
    curl -sSf https://sh.rustup.rs | sh -s -- -y -q --profile minimal
    PATH=$HOME/.cargo/bin:$PATH
fi

step "2/9 Building rbk (release)"
T=$(now)
show cargo build --release -q -p rbk
RBK_BUILD_TIME=$(since "$T")
RBK="$REPO/target/release/rbk"
[ -n "${CARGO_TARGET_DIR:-}" ] && RBK="$CARGO_TARGET_DIR/release/rbk"
export RBK
echo "built $RBK in $RBK_BUILD_TIME"
rbk() { "$RBK" "$@"; }
echo "what this host gives rbk:"
show rbk system info --require "$NEEDS" ||
    die "this host lacks what the demo needs (above); install it and run me again"

step "3/9 Base images (debootstrap, no registry) and nginx's source tarball"
T=$(now)
show sh examples/bases/make-bases.sh
show sh examples/debian/nginx/fetch-source.sh
BASES_TIME=$(since "$T")
show rbk images

step "4/9 Building every runnable example at once: rbk build examples/debian/rbk.toml"
T=$(now)
show rbk build --progress plain examples/debian/rbk.toml 2>&1 | tee "$LOGS/build1.log"
COLD_TIME=$(since "$T")
grep -q '^built ' "$LOGS/build1.log" || die "the build failed (log: $LOGS/build1.log)"
COLD_LINE=$(grep '^built ' "$LOGS/build1.log" | tail -n 1)

step "5/9 The build graph: one FROM and one 'apt-get update' for all the images"
show rbk graph examples/debian/rbk.toml

remove_containers
# Waits until URL $2 answers, served by container $1, or gives up.
wait_http() {
    i=0
    until curl -fsS --max-time 2 -o "$LOGS/page.html" "$2" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -lt 240 ] || { rbk logs "$1" >&2; die "$1 did not answer on $2"; }
        sleep 0.5
    done
}
port_free() {
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; then
        die "something already listens on port $1; stop it and run me again"
    fi
}

step "6/9 nginx, compiled here: its configure arguments, then serving on port 80"
show rbk run --rm rbk-examples/nginx:debian /usr/local/nginx/sbin/nginx -V
port_free 80
show rbk run -d --name demo-nginx -p 80:80 rbk-examples/nginx:debian
wait_http demo-nginx http://127.0.0.1:80/
show curl -sS -o "$LOGS/page.html" -w 'HTTP %{http_code}, %{size_download} bytes from %{url_effective}\n' http://127.0.0.1:80/
printf 'page title: %s\n' "$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$LOGS/page.html")"
grep -q 'Welcome to nginx!' "$LOGS/page.html" || die "that is not nginx's page"
show rbk ps
NGINX_OK=yes

step "7/9 Tomcat: version.sh, then its default page on port 8080"
# shellcheck disable=SC2016
show rbk run --rm rbk-examples/tomcat:debian sh -c '$CATALINA_HOME/bin/version.sh'
port_free 8080
show rbk run -d --name demo-tomcat -p 8080:8080 rbk-examples/tomcat:debian
wait_http demo-tomcat http://127.0.0.1:8080/
show curl -sS -o "$LOGS/page.html" -w 'HTTP %{http_code}, %{size_download} bytes from %{url_effective}\n' http://127.0.0.1:8080/
grep -q 'It works' "$LOGS/page.html" || die "that is not Tomcat's default page"
TOMCAT_OK=yes

step "8/9 MariaDB: a root password and a data directory ($DATADIR), then log in"
mkdir -p "$DATADIR"
echo "\$ rbk run -d --name demo-mariadb -p 127.0.0.1:3306:3306 -v $DATADIR:/var/lib/mysql -e MYSQL_ROOT_PASSWORD=*** rbk-examples/mariadb:debian"
"$RBK" run -d --name demo-mariadb -p 127.0.0.1:3306:3306 -v "$DATADIR:/var/lib/mysql" \
    -e MYSQL_ROOT_PASSWORD="$PASSWORD" rbk-examples/mariadb:debian
login() {
    "$RBK" run --rm --network host --entrypoint mariadb rbk-examples/mariadb:debian \
        --protocol=tcp -h127.0.0.1 -P3306 -uroot "$@"
}
i=0
until login -p"$PASSWORD" -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 120 ] || { rbk logs demo-mariadb >&2; die "could not log in to MariaDB"; }
    sleep 1
done
echo "\$ rbk run --rm --network host --entrypoint mariadb rbk-examples/mariadb:debian -h127.0.0.1 -uroot -p*** -e 'SELECT ...'"
login -p"$PASSWORD" -t -e "SELECT VERSION() AS version, CURRENT_USER() AS user;"
if login -pwrong-password -e 'SELECT 1' >/dev/null 2>&1; then
    die "MariaDB accepted a wrong password"
fi
echo "(and a wrong password is refused; the databases stay in $DATADIR)"
MARIADB_OK=yes

step "Stopping and removing the three containers"
show rbk ps
for c in $CONTAINERS; do
    show rbk stop "$c"
    show rbk rm "$c"
done

step "9/9 Rebuilding: every step comes from the cache"
T=$(now)
show rbk build --progress plain examples/debian/rbk.toml 2>&1 | tee "$LOGS/build2.log"
WARM_TIME=$(since "$T")
grep -q '^built ' "$LOGS/build2.log" || die "the rebuild failed (log: $LOGS/build2.log)"
WARM_LINE=$(grep '^built ' "$LOGS/build2.log" | tail -n 1)
CACHED=$(grep -c 'CACHED' "$LOGS/build2.log" || true)
case $WARM_LINE in
    *" 0 steps run"*) ;;
    *) die "the rebuild ran steps: $WARM_LINE" ;;
esac

step "Summary"
"$RBK" images | awk 'NR == 1 || /rbk-examples\/|localhost\//'
cat <<EOF

rbk (release build)     $RBK_BUILD_TIME
bases, nginx source     $BASES_TIME
build, all at once      $COLD_TIME   ($COLD_LINE)
rebuild                 $WARM_TIME   ($WARM_LINE; $CACHED CACHED lines)
nginx on port 80        ${NGINX_OK:-no}
Tomcat on port 8080     ${TOMCAT_OK:-no}
MariaDB login           ${MARIADB_OK:-no}
total                   $(since "$START")
store                   ${RBK_ROOT:-/var/lib/rbk}; logs in $LOGS
EOF
