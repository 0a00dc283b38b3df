#!/bin/sh
# rbk in one command, on a fresh Debian (bookworm) machine, as root:
#
#   sh scripts/demo.sh
#
# 1. installs the Debian packages it needs (and Rust, if cargo is missing),
# 2. builds rbk in release mode,
# 3. makes the base images (busybox, debian:bookworm) without any registry,
# 4. builds nginx, Tomcat and MariaDB at once from examples/debian/rbk.toml,
# 5. prints the build graph (the three share their first steps),
# 6. starts nginx with `rbk run` and fetches its page on port 80,
# 7. starts MariaDB and logs in with the root password it was given,
# 8. stops both, rebuilds (every step CACHED) and prints a summary.
#
# Environment: RBK_ROOT (the store, default /var/lib/rbk), DEMO_PASSWORD.
set -eu

cd "$(dirname "$0")/.."
REPO=$(pwd)
PASSWORD=${DEMO_PASSWORD:-rbk-demo-secret}
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/rbk-demo.XXXXXX")
NGINX_PID=
MARIADB_PID=

if [ -t 1 ]; then B=$(printf '\033[1m'); N=$(printf '\033[0m'); else B=; N=; fi
step() { printf '\n%s==> %s%s\n' "$B" "$*" "$N"; }
# Prints a command, then runs it.
show() { printf '$ %s\n' "$*"; "$@"; }
die() { printf '\ndemo: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2fs", b - a }'; }

stop_containers() {
    for pid in $NGINX_PID $MARIADB_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in $NGINX_PID $MARIADB_PID; do
        wait "$pid" 2>/dev/null || true
    done
    NGINX_PID=
    MARIADB_PID=
}
trap 'stop_containers' EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "run me as root (containers and debootstrap need it): sudo sh scripts/demo.sh"
START=$(now)

step "1/8 Debian packages: busybox-static debootstrap curl (and a C toolchain for cargo)"
PKGS="busybox-static debootstrap curl ca-certificates gcc libc6-dev tar"
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

step "2/8 Building rbk (release)"
T=$(now)
show cargo build --release -q -p rbk
RBK_BUILD_TIME=$(since "$T")
RBK="$REPO/target/release/rbk"
[ -n "${CARGO_TARGET_DIR:-}" ] && RBK="$CARGO_TARGET_DIR/release/rbk"
export RBK
echo "built $RBK in $RBK_BUILD_TIME"
rbk() { "$RBK" "$@"; }

step "3/8 Base images: localhost/busybox:latest and localhost/debian:bookworm (debootstrap, no registry)"
T=$(now)
show sh examples/bases/make-bases.sh
BASES_TIME=$(since "$T")
show rbk images

step "4/8 Building nginx, Tomcat and MariaDB at once: rbk build examples/debian/rbk.toml"
T=$(now)
show rbk build --progress plain examples/debian/rbk.toml 2>&1 | tee "$LOGS/build1.log"
COLD_TIME=$(since "$T")
grep -q '^built ' "$LOGS/build1.log" || die "the build failed (log: $LOGS/build1.log)"
COLD_LINE=$(grep '^built ' "$LOGS/build1.log" | tail -n 1)

step "5/8 The build graph: one FROM and one 'apt-get update' for all three images"
show rbk graph examples/debian/rbk.toml

step "6/8 nginx: rbk run in the background, then curl http://127.0.0.1:80/"
if curl -s -o /dev/null --max-time 2 http://127.0.0.1:80/; then
    die "something already listens on port 80; stop it and run me again"
fi
echo "\$ rbk run --rm --name demo-nginx rbk-examples/nginx:debian &"
"$RBK" run --rm --name demo-nginx rbk-examples/nginx:debian >"$LOGS/nginx.log" 2>&1 &
NGINX_PID=$!
i=0
until curl -fsS --max-time 2 -o "$LOGS/page.html" http://127.0.0.1:80/ 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -lt 60 ] || { cat "$LOGS/nginx.log" >&2; die "nginx did not answer on port 80"; }
    kill -0 "$NGINX_PID" 2>/dev/null || { cat "$LOGS/nginx.log" >&2; die "nginx exited"; }
    sleep 0.5
done
show curl -sS -o "$LOGS/page.html" -w 'HTTP %{http_code}, %{size_download} bytes from %{url_effective}\n' http://127.0.0.1:80/
printf 'page title: %s\n' "$(sed -n 's:.*<title>\(.*\)</title>.*:\1:p' "$LOGS/page.html")"
grep -q 'Welcome to nginx!' "$LOGS/page.html" || die "that is not nginx's page"
NGINX_OK=yes

step "7/8 MariaDB: start it with MYSQL_ROOT_PASSWORD, then log in with the password"
echo "\$ rbk run --rm --name demo-mariadb -e MYSQL_ROOT_PASSWORD=*** rbk-examples/mariadb:debian &"
"$RBK" run --rm --name demo-mariadb -e MYSQL_ROOT_PASSWORD="$PASSWORD" \
    rbk-examples/mariadb:debian >"$LOGS/mariadb.log" 2>&1 &
MARIADB_PID=$!
login() {
    "$RBK" run --rm --network host --entrypoint mariadb rbk-examples/mariadb:debian \
        --protocol=tcp -h127.0.0.1 -P3306 -uroot "$@"
}
i=0
until login -p"$PASSWORD" -e 'SELECT 1' >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -lt 90 ] || { cat "$LOGS/mariadb.log" >&2; die "could not log in to MariaDB"; }
    kill -0 "$MARIADB_PID" 2>/dev/null || { cat "$LOGS/mariadb.log" >&2; die "mariadb exited"; }
    sleep 1
done
echo "\$ rbk run --rm --entrypoint mariadb rbk-examples/mariadb:debian -h127.0.0.1 -uroot -p*** -e 'SELECT ...'"
login -p"$PASSWORD" -t -e "SELECT VERSION() AS version, CURRENT_USER() AS user;"
if login -pwrong-password -e 'SELECT 1' >/dev/null 2>&1; then
    die "MariaDB accepted a wrong password"
fi
echo "(and a wrong password is refused)"
MARIADB_OK=yes

step "Stopping both (SIGTERM through rbk run to the servers)"
stop_containers
echo "stopped"

step "8/8 Rebuilding: every step comes from the cache"
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
base images             $BASES_TIME
build, 3 images at once $COLD_TIME   ($COLD_LINE)
rebuild                 $WARM_TIME   ($WARM_LINE; $CACHED CACHED lines)
nginx on port 80        ${NGINX_OK:-no}
MariaDB login           ${MARIADB_OK:-no}
total                   $(since "$START")
store                   ${RBK_ROOT:-/var/lib/rbk}; logs in $LOGS
EOF
