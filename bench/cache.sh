#!/usr/bin/env bash
# A build cache shared through a registry, rbk against buildah in one run:
# builder A builds a bench case from scratch and exports its cache
# (`--cache-to`); builder B, with an empty store holding only the base
# image, builds the same context with `--cache-from`. Each run has its own
# fresh registry (Debian's docker-registry) and fresh stores.
#
#   sudo bench/cache.sh                 # CASE=multistage RUNS=3
#
# Needs root, buildah and runc, docker-registry, busybox-static, curl, bc.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
cases_dir=$repo/bench/cases
work=${BENCH_DIR:-/var/tmp/rbk-bench}/cache
runs=${RUNS:-3}
case_=${CASE:-multistage}
mkdir -p "$work"
command -v buildah >/dev/null || { echo "bench: buildah is not installed" >&2; exit 1; }
[ -x /usr/bin/docker-registry ] || { echo "bench: docker-registry is not installed" >&2; exit 1; }
use_release_rbk
rbk=$RBK
"$cases_dir/make-contexts.sh" "$work/ctx" >/dev/null
ctx=$work/ctx/$case_

# The base image, once, as an OCI archive both tools load.
if [ ! -f "$work/busybox-oci.tar" ]; then
  make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
  rm -rf "$work/base-root"
  "$rbk" --root "$work/base-root" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  "$rbk" --root "$work/base-root" save -o "$work/busybox-oci.tar" localhost/busybox:latest
fi

cleanup() {
  stop_registry
  for s in a b; do
    buildah --root "$work/buildah-$s" --runroot "$work/buildah-run-$s" rm -a >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

export BENCH_LOG=$work/bench.log

rbk_store() { rm -rf "$work/rbk-$1"; "$rbk" --root "$work/rbk-$1" load -i "$work/busybox-oci.tar" >/dev/null; }
bah() { local s=$1; shift; buildah --root "$work/buildah-$s" --runroot "$work/buildah-run-$s" "$@"; }
buildah_store() {
  bah "$1" rm -a >/dev/null 2>&1 || true
  rm -rf "$work/buildah-$1" "$work/buildah-run-$1"
  bah "$1" pull -q "oci-archive:$work/busybox-oci.tar" >/dev/null
  bah "$1" tag "$(bah "$1" images -q | head -1)" localhost/busybox:latest
}

: >"$work/bench.log"
ra=(); rb=(); ba=(); bb=()
for ((i = 1; i <= runs; i++)); do
  stop_registry; start_registry "$work"
  rbk_store a; rbk_store b
  ra+=("$(t "$rbk" --root "$work/rbk-a" build --progress plain -t "bench/$case_" \
    --cache-to "type=registry,ref=$host/rbk/cache:$case_,mode=max" "$ctx")")
  rb+=("$(t "$rbk" --root "$work/rbk-b" build --progress plain -t "bench/$case_" \
    --cache-from "$host/rbk/cache:$case_" "$ctx")")
  grep -q "0 steps run" <(tail -3 "$work/bench.log") || { echo "bench: rbk's builder B ran steps" >&2; exit 1; }
  buildah_store a; buildah_store b
  ba+=("$(t bah a build --layers --runtime /usr/sbin/runc --tls-verify=false \
    --cache-to "$host/buildah/cache" -t "bench/$case_" "$ctx")")
  bb+=("$(t bah b build --layers --runtime /usr/sbin/runc --tls-verify=false \
    --cache-from "$host/buildah/cache" -t "bench/$case_" "$ctx")")
done
printf '\ncase %s; local docker-registry; medians of %s runs (seconds)\n' "$case_" "$runs"
printf '%-40s %8s %8s %7s\n' "measure" "rbk" "buildah" "ratio"
row "A: cold build + export cache" "$(median "${ra[@]}")" "$(median "${ba[@]}")"
row "B: empty store, build from the cache" "$(median "${rb[@]}")" "$(median "${bb[@]}")"
echo "(ratio = buildah / rbk)"
