#!/usr/bin/env bash
# A store growing to N images of 10 layers each (one rbk.toml build per
# step of growth; each layer a COPY of its own file), and at each size the
# everyday commands, medians of RUNS: `images`, `inspect` of one image,
# `prune` with nothing to prune, a no-op build of one Dockerfile, and
# `graph` / a no-op build of a 200-target rbk.toml.
#
#   sudo bench/scale.sh           # SIZES="10 100 1000" RUNS=5 RBK=target/release/rbk
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
SIZES=${SIZES:-10 100 1000} RUNS=${RUNS:-5}
use_release_rbk
work=${BENCH_DIR:-/var/tmp/rbk-bench}/scale
rm -rf "$work"; mkdir -p "$work/ctx"
export RBK_ROOT=$work/store
make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
"$RBK" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
# targets FROM TO: an rbk.toml of targets FROM..TO, each 10 COPY layers.
targets() {
  local i k
  for i in $(seq "$1" "$2"); do
    mkdir -p "$work/ctx/t$i"
    {
      echo "FROM localhost/busybox:latest"
      for k in $(seq 1 10); do
        echo "$i.$k" >"$work/ctx/t$i/f$k"
        echo "COPY f$k /f$k"
      done
    } >"$work/ctx/t$i/Dockerfile"
    printf '[target.t%s]\ncontext = "ctx/t%s"\ntags = ["scale/t%s:1"]\n\n' "$i" "$i" "$i"
  done
}
ms() { echo "$1 * 1000" | bc -l | xargs printf '%.0f'; }
timed() { local s; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc -l; }
med() { local v=(); for _ in $(seq "$RUNS"); do v+=("$(timed "$@")"); done; median "${v[@]}"; }
targets 1 200 >"$work/200.toml"
have=0
printf '%6s %8s %8s %8s %8s %10s %10s %10s\n' images layers images inspect prune noop-1 graph-200 noop-200
for n in $SIZES; do
  if [ "$n" -gt "$have" ]; then
    targets $((have + 1)) "$n" >"$work/grow.toml"
    "$RBK" build -q "$work/grow.toml" >/dev/null
    have=$n
  fi
  layers=$(find "$RBK_ROOT/snapshots" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' | wc -l)
  mid=$(( (n + 1) / 2 ))
  i=$(med "$RBK" images)
  s=$(med "$RBK" inspect "scale/t$mid:1")
  p=$(med "$RBK" prune)
  one=$(med "$RBK" build -q "$work/ctx/t$mid")
  if [ "$n" -ge 200 ]; then
    g=$(ms "$(med "$RBK" graph "$work/200.toml")")
    b=$(ms "$(med "$RBK" build -q "$work/200.toml")")
  else
    g=- b=-
  fi
  printf '%6s %8s %8s %8s %8s %10s %10s %10s\n' "$n" "$layers" "$(ms "$i")" "$(ms "$s")" "$(ms "$p")" "$(ms "$one")" "$g" "$b"
done
echo "(milliseconds; layers = snapshots in the store)"
