#!/usr/bin/env bash
# The fully cached CI build (issue 30): job A builds
#   FROM localhost/busybox; COPY big /big (50 MB random); RUN …
# exports its cache to a registry and pushes app:1; job B, a fresh store
# holding only the same base, builds the same context from that cache and
# pushes app:2. B's time, the bytes B downloads from the registry (counted
# by bench/tcpcount.py, which B alone talks through: HTTP headers and
# manifests included) and B's peak RSS; rbk beside BuildKit (dockerd's,
# inline cache: `--build-arg BUILDKIT_INLINE_CACHE=1` in A, `--cache-from
# app:1` in B, then `docker push`) and buildah (`--layers --cache-to` in A,
# `--cache-from` in B, then `buildah push`), medians of RUNS, each run with
# a fresh registry and fresh stores. The floor: 0 bytes, and the time of a
# no-op rebuild of the same context in rbk's store B once it has it all.
#
#   bench/ci-cache.sh          # RUNS=3; RBK=path to skip the build
#   RBK_BEFORE=path/to/older/rbk bench/ci-cache.sh   # and a row for it
#
# Needs root, docker.io (dockerd), buildah and runc, docker-registry,
# busybox-static, python3, curl, bc.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/ci-cache
runs=${RUNS:-3}
mkdir -p "$work"
for tool in buildah /usr/sbin/dockerd /usr/bin/docker-registry python3; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed" >&2; exit 1; }
done
use_release_rbk
rbk=$RBK
export BENCH_LOG=$work/bench.log
: >"$BENCH_LOG"

ctx=$work/ctx
if [ ! -f "$ctx/big" ]; then
  mkdir -p "$ctx"
  head -c 50000000 /dev/urandom >"$ctx/big"
  printf 'FROM localhost/busybox:latest\nCOPY big /big\nRUN wc -c /big > /size\n' >"$ctx/Dockerfile"
fi
if [ ! -f "$work/busybox-oci.tar" ]; then
  make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
  rm -rf "$work/base-root"
  "$rbk" --root "$work/base-root" import "$work/busybox.tar" localhost/busybox:latest \
    --change 'CMD ["/bin/sh"]' >/dev/null
  "$rbk" --root "$work/base-root" save -o "$work/busybox-oci.tar" localhost/busybox:latest
fi

# count_start: a byte-counting forwarder to the registry ($host) on a new
# port; sets $via (host:port to use) and $countpid. count_stop prints the
# bytes that came from the registry.
countpid=
count_start() {
  local port target=${host##*:}
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  python3 "$repo/bench/tcpcount.py" "$work/count.json" "$target" "$port" >"$work/count.out" 2>&1 &
  countpid=$!
  for _ in $(seq 50); do grep -q ready "$work/count.out" 2>/dev/null && break; sleep 0.1; done
  via=127.0.0.1:$port
}
count_stop() {
  kill -TERM "$countpid"; wait "$countpid" 2>/dev/null || true; countpid=
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); print(sum(v[1] for v in c.values()))' "$work/count.json"
}

bah() { local s=$1; shift; buildah --root "$work/buildah-$s" --runroot "$work/buildah-run-$s" "$@"; }
buildah_store() {
  bah "$1" rm -a >/dev/null 2>&1 || true
  bah "$1" rmi -af >/dev/null 2>&1 || true
  rm -rf "$work/buildah-$1" "$work/buildah-run-$1"
  bah "$1" pull -q "oci-archive:$work/busybox-oci.tar" >/dev/null
  bah "$1" tag "$(bah "$1" images -q | head -1)" localhost/busybox:latest
}
rbk_store() { rm -rf "$work/rbk-$1"; "$rbk" --root "$work/rbk-$1" load -i "$work/busybox-oci.tar" >/dev/null; }
docker_fresh() {
  dk rmi -f $(dk images -q) >/dev/null 2>&1 || true
  dk builder prune -af >/dev/null 2>&1
  dk load -q -i "$work/busybox-oci.tar" >/dev/null
}
# hwm_reset PID / hwm PID: a daemon's peak RSS (kB) since the reset.
hwm_reset() { echo 5 >"/proc/$1/clear_refs"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

cleanup() {
  [ -z "$countpid" ] || kill "$countpid" 2>/dev/null || true
  stop_registry; stop_dockerd
  for s in a b; do bah "$s" rm -a >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
start_dockerd "$work/dockerd"

rt=(); rbytes=(); rrss=(); floor=(); ot=(); obytes=(); orss=()
dt=(); dbytes=(); drss=()
bt=(); bbytes=(); brss=()
for ((i = 1; i <= runs; i++)); do
  stop_registry; start_registry "$work"

  # rbk
  rbk_store a; rbk_store b
  t "$rbk" --root "$work/rbk-a" build --progress plain --pull=never --push -t "$host/rbk/app:1" \
    --cache-to "type=registry,ref=$host/rbk/cache:ci,mode=max" "$ctx" >/dev/null
  count_start
  read -r s kb < <(peak_kb "$rbk" --root "$work/rbk-b" build --progress plain --pull=never \
    --push -t "$via/rbk/app:2" --cache-from "type=registry,ref=$via/rbk/cache:ci" "$ctx")
  rbytes+=("$(count_stop)"); rt+=("$s"); rrss+=("$kb")
  grep -q "0 steps run, 2 cached" <(tail -20 "$BENCH_LOG") || { echo "bench: rbk's job B ran steps" >&2; exit 1; }
  floor+=("$(t "$rbk" --root "$work/rbk-b" build --progress plain --pull=never -t "$via/rbk/app:2" "$ctx")")

  # An older rbk, when given: the same job B in a fresh store.
  if [ -n "${RBK_BEFORE:-}" ]; then
    rm -rf "$work/rbk-o"; "$RBK_BEFORE" --root "$work/rbk-o" load -i "$work/busybox-oci.tar" >/dev/null
    count_start
    read -r s kb < <(peak_kb "$RBK_BEFORE" --root "$work/rbk-o" build --progress plain --pull=never \
      --push -t "$via/rbk/app:3" --cache-from "type=registry,ref=$via/rbk/cache:ci" "$ctx")
    obytes+=("$(count_stop)"); ot+=("$s"); orss+=("$kb")
  fi

  # BuildKit (dockerd's), inline cache
  docker_fresh
  t dk build --network host --build-arg BUILDKIT_INLINE_CACHE=1 -t "$host/dk/app:1" "$ctx" >/dev/null
  t dk push "$host/dk/app:1" >/dev/null
  docker_fresh
  count_start
  hwm_reset "$dockerpid"
  t0=$EPOCHREALTIME
  dk build --network host --cache-from "$via/dk/app:1" -t "$via/dk/app:2" "$ctx" >>"$BENCH_LOG" 2>&1
  dk push "$via/dk/app:2" >>"$BENCH_LOG" 2>&1
  dt+=("$(echo "$EPOCHREALTIME - $t0" | bc -l)")
  drss+=("$(hwm "$dockerpid")"); dbytes+=("$(count_stop)")
  grep -q "CACHED" <(tail -30 "$BENCH_LOG") || echo "bench: BuildKit's job B used no cache" >&2

  # buildah
  buildah_store a; buildah_store b
  t bah a build --layers --runtime /usr/sbin/runc --tls-verify=false \
    --cache-to "$host/buildah/cache" -t "$host/buildah/app:1" "$ctx" >/dev/null
  t bah a push --tls-verify=false "$host/buildah/app:1" >/dev/null
  count_start
  t0=$EPOCHREALTIME
  read -r _ kb < <(peak_kb buildah --root "$work/buildah-b" --runroot "$work/buildah-run-b" \
    build --layers --runtime /usr/sbin/runc --tls-verify=false \
    --cache-from "$via/buildah/cache" -t "$via/buildah/app:2" "$ctx")
  read -r _ kb2 < <(peak_kb buildah --root "$work/buildah-b" --runroot "$work/buildah-run-b" \
    push --tls-verify=false "$via/buildah/app:2")
  bt+=("$(echo "$EPOCHREALTIME - $t0" | bc -l)")
  bbytes+=("$(count_stop)"); brss+=("$((kb > kb2 ? kb : kb2))")
done

echo "rbk $("$rbk" --version | awk '{print $2}'), BuildKit (dockerd $(dk version --format '{{.Server.Version}}')), $(buildah --version | awk '{print $1, $3}'); $runs runs, $(nproc) cores, $(date -u '+%F %H:%M') UTC"
printf '\njob B of the fully cached CI build (50 MB COPY + RUN), medians of %s runs\n' "$runs"
printf '%-28s %10s %16s %14s\n' "builder" "seconds" "bytes from reg." "peak RSS (MB)"
line() { printf '%-28s %10.3f %16d %14.1f\n' "$1" "$2" "$3" "$(echo "$4 / 1024" | bc -l)"; }
line "rbk" "$(median "${rt[@]}")" "$(median "${rbytes[@]}")" "$(median "${rrss[@]}")"
[ -z "${RBK_BEFORE:-}" ] || line "rbk before (RBK_BEFORE)" "$(median "${ot[@]}")" "$(median "${obytes[@]}")" "$(median "${orss[@]}")"
line "BuildKit (inline cache)" "$(median "${dt[@]}")" "$(median "${dbytes[@]}")" "$(median "${drss[@]}")"
line "buildah --layers" "$(median "${bt[@]}")" "$(median "${bbytes[@]}")" "$(median "${brss[@]}")"
printf '%-28s %10.3f %16d %14s\n' "floor (rbk no-op rebuild)" "$(median "${floor[@]}")" 0 "-"
echo "(BuildKit's RSS is dockerd's peak during job B; bytes include HTTP headers and manifests)"
echo "per run: rbk ${rt[*]} s / ${rbytes[*]} B; BuildKit ${dt[*]} s / ${dbytes[*]} B; buildah ${bt[*]} s / ${bbytes[*]} B"
