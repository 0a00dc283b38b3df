#!/usr/bin/env bash
# Pull + first run against its floor (issue 30 part 4; measured only, the
# pull itself unchanged): an image of the busybox base plus three equal
# 60 MB text layers is pushed gzip'd to a loopback docker-registry; then,
# page cache dropped before each, (a) `rbk pull` into an empty store and
# `rbk run --network none IMAGE true` (which unpacks every layer), against
# (b) the floor: the same gzip layer blobs, each `gzip -dc | tar -x` into
# its own directory, all at once. Medians of 3, ratio = rbk / floor.
#
#   bench/pull-first-run.sh        # RUNS=3; RBK=path skips the build
#   BEFORE=path/to/older/rbk bench/pull-first-run.sh   # and that one beside
#   SOURCE_ROOT=/var/tmp/rbk-demo-root SOURCE_IMAGE=rbk-examples/tomcat:debian \
#     bench/pull-first-run.sh      # an image of another store instead (here
#                                  # the Tomcat example scripts/demo.sh built)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/pull-first-run
runs=${RUNS:-3}
mkdir -p "$work"
use_release_rbk
export BENCH_LOG=$work/bench.log RBK_ROOT=$work/rbk-root
: >"$BENCH_LOG"
# The words image: the busybox base and three 60 MB text layers.
words_image() {
  ctx=$work/ctx
  words_context "$ctx" localhost/busybox:latest
  rm -rf "$RBK_ROOT"
  [ -f "$work/busybox.tar" ] || make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
  "$RBK" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  "$RBK" build -q -t localhost/bench/pull:latest "$ctx" >>"$BENCH_LOG" 2>&1
}
trap stop_registry EXIT
if [ -n "${SOURCE_IMAGE:-}" ]; then
  : "${SOURCE_ROOT:?SOURCE_ROOT names the store that holds SOURCE_IMAGE}"
  start_registry "$work"
  "$RBK" --root "$SOURCE_ROOT" push "$SOURCE_IMAGE" "$host/pull:1" >>"$BENCH_LOG" 2>&1
else
  words_image
  start_registry "$work"
  "$RBK" push localhost/bench/pull:latest "$host/pull:1" >>"$BENCH_LOG" 2>&1
fi
# The pushed gzip blobs, for the floor.
rm -rf "$work/blobs"; mkdir -p "$work/blobs"
for d in $(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$host/v2/pull/manifests/1" |
  python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))'); do
  curl -fsS -o "$work/blobs/${d#sha256:}.gz" "http://$host/v2/pull/blobs/$d"
done
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
floor() {
  rm -rf "$work/floor"; mkdir -p "$work/floor"
  local n=0
  for b in "$work"/blobs/*.gz; do
    n=$((n + 1)); mkdir -p "$work/floor/$n"
    (gzip -dc "$b" | tar -x -C "$work/floor/$n") &
  done
  wait
}
# The pull and the first run timed apart (SECONDS PEAK_RSS_KB each), and
# a second run of the unpacked image: first run - second run is the unpack.
pull_run() {
  local pull run again rbk=${1:-$RBK}
  pull=$(peak_kb "$rbk" --root "$work/pulled" pull "$host/pull:1")
  run=$(peak_kb "$rbk" --root "$work/pulled" run --rm --network none "$host/pull:1" true)
  again=$(peak_kb "$rbk" --root "$work/pulled" run --rm --network none "$host/pull:1" true)
  echo "$pull $run $again"
}
P=(); F=(); PL=(); R=(); A=(); RSS=(); B=()
for ((i = 1; i <= runs; i++)); do
  rm -rf "$work/pulled"; drop
  read -r pl plr r rr a _ < <(pull_run)
  PL+=("$pl"); R+=("$r"); A+=("$a"); P+=("$(echo "$pl + $r" | bc -l)")
  RSS+=("$(( plr > rr ? plr : rr ))")
  drop
  F+=("$(t floor)")
  if [ -n "${BEFORE:-}" ]; then
    rm -rf "$work/pulled"; drop
    read -r pl _ r _ _ _ < <(pull_run "$BEFORE")
    B+=("$(echo "$pl + $r" | bc -l)")
  fi
done
p=$(median "${P[@]}") f=$(median "${F[@]}")
echo "$(ls "$work/blobs" | wc -l) gzip layers, $(du -sm "$work/blobs" | cut -f1) MB; medians of $runs runs, seconds, page cache dropped before each"
printf '%-44s %8.3f\n' "rbk pull + first run (--network none)" "$p"
printf '%-44s %8.3f\n' "  of which rbk pull" "$(median "${PL[@]}")"
printf '%-44s %8.3f\n' "  of which first run (unpack + run)" "$(median "${R[@]}")"
printf '%-44s %8.3f\n' "  second run (nothing to unpack)" "$(median "${A[@]}")"
printf '%-44s %8d\n' "  peak RSS of one rbk process, MB" "$(( $(median "${RSS[@]}") / 1024 ))"
printf '%-44s %8.3f\n' "floor: parallel gzip -dc | tar -x per layer" "$f"
printf '%-44s %8.2f\n' "ratio rbk / floor" "$(echo "$p / $f" | bc -l)"
if [ -n "${BEFORE:-}" ]; then
  b=$(median "${B[@]}")
  printf '%-44s %8.3f\n' "before ($BEFORE) pull + first run" "$b"
  printf '%-44s %8.2f\n' "ratio before / floor" "$(echo "$b / $f" | bc -l)"
fi
