#!/usr/bin/env bash
# The differential suite: builds every case under tests/differential/cases
# with BuildKit (dockerd from Debian's docker.io, started here on a private
# socket, data root and exec root) and with rbk, then compares the two
# images' file trees and configs (difftool.py). As root:
#
#   tests/differential/run.sh            # every case
#   tests/differential/run.sh chown      # the cases whose name has "chown"
#
# A case is a directory with a Dockerfile and, optionally, its own context
# files and .dockerignore, laid over the shared context difftool.py makes.
# A case where rbk differs on purpose has a file EXPECTED-DIFFERENCE saying
# why; it is reported, not failed. Exits 1 if any other case differs.
#
# Environment: RBK (the rbk binary; default target/debug/rbk, built if
# missing), DOCKERD (default /usr/sbin/dockerd), DOCKER (default
# /usr/bin/docker), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
HERE=$REPO/tests/differential
FILTER=${1:-}
DOCKERD=${DOCKERD:-/usr/sbin/dockerd}
DOCKER=${DOCKER:-/usr/bin/docker}

die() { printf 'differential: %s\n' "$*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (dockerd and rbk's RUN)"
[ -x "$DOCKERD" ] || die "no $DOCKERD: apt-get install docker.io"
[ -x "$DOCKER" ] || die "no $DOCKER: apt-get install docker.io"
command -v python3 >/dev/null || die "no python3"
if [ -z "${RBK:-}" ]; then
    RBK=$REPO/target/debug/rbk
    [ -n "${CARGO_TARGET_DIR:-}" ] && RBK=$CARGO_TARGET_DIR/debug/rbk
    [ -x "$RBK" ] || cargo build -q -p rbk
fi
[ -x "$RBK" ] || die "no rbk binary at $RBK"

WORK=$(mktemp -d /var/tmp/rbk-differential.XXXXXX)
D=$WORK/dockerd
SOCK=unix://$D/docker.sock
DOCKERD_PID=
cleanup() {
    if [ -n "$DOCKERD_PID" ]; then
        kill "$DOCKERD_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$DOCKERD_PID" 2>/dev/null || true
    fi
    # Whatever dockerd or a build left mounted under the work directory.
    awk -v w="$WORK" '$5 == w || index($5, w "/") == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    if [ "${KEEP:-}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$D/data" "$D/exec" "$WORK/out"
export RBK_ROOT=$WORK/store
"$DOCKERD" -H "$SOCK" --data-root "$D/data" --exec-root "$D/exec" --pidfile "$D/pid" \
    --iptables=false --ip6tables=false --bridge=none >"$D/log" 2>&1 &
DOCKERD_PID=$!
docker() { DOCKER_BUILDKIT=1 "$DOCKER" -H "$SOCK" "$@"; }
for i in $(seq 150); do
    docker version >/dev/null 2>&1 && break
    kill -0 "$DOCKERD_PID" 2>/dev/null || { cat "$D/log" >&2; die "dockerd exited"; }
    [ "$i" -lt 150 ] || { tail -20 "$D/log" >&2; die "dockerd did not start"; }
    sleep 0.2
done
echo "BuildKit: dockerd $(docker version --format '{{.Server.Version}}'); rbk: $("$RBK" --version)"

# One base for both: rbk's busybox image with the mount points every real
# base has (/dev, /proc, /sys: without them dockerd 20.10's runc leaves its
# own in the first RUN's layer, which BuildKit 0.12 and later remove),
# loaded into dockerd from rbk save.
RBK="$RBK" sh examples/bases/make-bases.sh busybox >/dev/null 2>&1 ||
    RBK="$RBK" sh examples/bases/make-bases.sh busybox
mkdir -p "$WORK/base/dev" "$WORK/base/proc" "$WORK/base/sys"
printf 'FROM localhost/busybox:latest\nCOPY . /\n' >"$WORK/base.Dockerfile"
"$RBK" build --progress plain -f "$WORK/base.Dockerfile" -t localhost/busybox:latest "$WORK/base" >"$WORK/base.log" 2>&1 ||
    { cat "$WORK/base.log" >&2; die "could not make the base"; }
"$RBK" save -o "$WORK/busybox.tar" localhost/busybox:latest
docker load -q -i "$WORK/busybox.tar" >/dev/null
python3 "$HERE/difftool.py" context "$WORK/context"

total=0 same=0 documented=0 failed=0
failures=()
# A multi-platform image saved by rbk loads and runs in Docker: the
# archive's index.json names an index of linux/amd64 and linux/riscv64 (the
# busybox image, and the same files stated as riscv64, which never runs);
# dockerd 20.10 takes this machine's image through manifest.json.
if [ -z "$FILTER" ] || [[ multi-platform-archive == *"$FILTER"* ]]; then
    total=$((total + 1))
    mkdir -p "$WORK/rv"
    printf 'FROM --platform=linux/amd64 localhost/busybox:latest AS files\nFROM scratch\nCOPY --from=files / /\n' >"$WORK/rv/Dockerfile"
    note=
    if "$RBK" build --progress plain --platform linux/riscv64 -t localhost/rv:1 "$WORK/rv" >"$WORK/rv.log" 2>&1 &&
        "$RBK" manifest create rbkdiff/multi:1 localhost/busybox:latest localhost/rv:1 >/dev/null 2>>"$WORK/rv.log" &&
        "$RBK" save -o "$WORK/multi.tar" rbkdiff/multi:1 &&
        docker load -q -i "$WORK/multi.tar" >>"$WORK/rv.log" 2>&1; then
        got=$(docker run --rm --network none rbkdiff/multi:1 echo loaded 2>&1 || true)
        [ "$got" = loaded ] || note="docker run of the loaded image said: $got"
    else
        note="could not save or load: $(tail -n3 "$WORK/rv.log" | tr '\n' ' ')"
    fi
    if [ -z "$note" ]; then
        same=$((same + 1))
        printf '%-40s %s\n' multi-platform-archive "docker loads and runs it"
    else
        failed=$((failed + 1))
        failures+=(multi-platform-archive)
        printf '%-40s %s\n' multi-platform-archive "$note"
    fi
fi
for case in "$HERE"/cases/*/; do
    name=$(basename "$case")
    [ -n "$FILTER" ] && [[ $name != *"$FILTER"* ]] && continue
    total=$((total + 1))
    ctx=$WORK/ctx/$name
    out=$WORK/out/$name
    mkdir -p "$ctx" "$out"
    cp -a "$WORK/context/." "$ctx/"
    cp -a "$case/." "$ctx/"
    rm -f "$ctx/EXPECTED-DIFFERENCE"
    tag=rbkdiff/$name:latest
    bk=0 rb=0
    docker build --network host -t "$tag" "$ctx" >"$out/buildkit.log" 2>&1 || bk=$?
    "$RBK" build --progress plain -t "$tag" "$ctx" >"$out/rbk.log" 2>&1 || rb=$?
    verdict=
    if [ "$bk" != 0 ] && [ "$rb" != 0 ]; then
        verdict=same
        note="both reject it"
    elif [ "$bk" != 0 ]; then
        verdict=differ
        note="BuildKit rejects it, rbk builds it: $(grep -m1 -iE 'error|failed' "$out/buildkit.log" || tail -n1 "$out/buildkit.log")"
    elif [ "$rb" != 0 ]; then
        verdict=differ
        note="rbk rejects it, BuildKit builds it: $(tail -n3 "$out/rbk.log" | tr '\n' ' ')"
        # What BuildKit made, for a look (KEEP=1).
        docker save -o "$out/buildkit.tar" "$tag" &&
            python3 "$HERE/difftool.py" manifest "$out/buildkit.tar" "$out/buildkit.json"
        rm -f "$out/buildkit.tar"
    else
        docker save -o "$out/buildkit.tar" "$tag"
        "$RBK" save -o "$out/rbk.tar" "$tag"
        python3 "$HERE/difftool.py" manifest "$out/buildkit.tar" "$out/buildkit.json"
        python3 "$HERE/difftool.py" manifest "$out/rbk.tar" "$out/rbk.json"
        rm -f "$out/buildkit.tar" "$out/rbk.tar"
        if python3 "$HERE/difftool.py" compare "$out/buildkit.json" "$out/rbk.json" >"$out/diff"; then
            verdict=same
            note=identical
        else
            verdict=differ
            note="different:"$'\n'"$(cat "$out/diff")"
        fi
    fi
    if [ -f "$case/EXPECTED-DIFFERENCE" ]; then
        reason=$(head -n1 "$case/EXPECTED-DIFFERENCE")
        if [ "$verdict" = differ ]; then
            documented=$((documented + 1))
            printf '%-40s documented difference: %s\n' "$name" "$reason"
        else
            same=$((same + 1))
            printf '%-40s %s (its EXPECTED-DIFFERENCE no longer holds: %s)\n' "$name" "$note" "$reason"
        fi
    elif [ "$verdict" = same ]; then
        same=$((same + 1))
        printf '%-40s %s\n' "$name" "$note"
    else
        failed=$((failed + 1))
        failures+=("$name")
        printf '%-40s %s\n' "$name" "$note"
    fi
done

echo
echo "differential: $same/$total identical to BuildKit, $documented documented differences, $failed undocumented"
if [ "$failed" -gt 0 ]; then
    echo "differing: ${failures[*]} (logs: KEEP=1 keeps $WORK/out)"
    exit 1
fi
