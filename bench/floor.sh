#!/usr/bin/env bash
# rbk against the physical floor of each bench case, in one run, for one
# or two rbk binaries (OLD and NEW, alternating), medians of RUNS:
#   single      cold build  vs  the RUN's own work (`dd` of 200 MB from
#                               /dev/urandom into the store's filesystem)
#   multistage  cold build  vs  one of its four stages built alone
#   wide        cold build  vs  `cp -a` of its context (page cache dropped
#                               before both)
#   store       bytes the store holds after the single build (blobs +
#               snapshots + metadata) vs the bytes of its layers' files
#
#   sudo bench/floor.sh NEW_RBK [OLD_RBK]      # RUNS=5
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
new=${1:?usage: bench/floor.sh NEW_RBK [OLD_RBK]}
old=${2:-}
runs=${RUNS:-5}
work=${BENCH_DIR:-/var/tmp/rbk-bench}/floor
mkdir -p "$work"
"$repo/bench/cases/make-contexts.sh" "$work/ctx" >/dev/null
[ -f "$work/busybox.tar" ] || make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
printf 'FROM localhost/busybox:latest AS s1\nRUN sleep 2 && dd if=/dev/urandom of=/s1.bin bs=1M count=20 status=none\n' \
  >"$work/one-stage.Dockerfile"

fresh() { # fresh RBK: an empty store with the busybox base
  rm -rf "$work/store"
  RBK_ROOT=$work/store "$1" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
}
build() { RBK_ROOT=$work/store "$@" >/dev/null 2>&1; }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
secs() { local t0; t0=$(now); "$@"; echo "$(now) - $t0" | bc -l; }

declare -A T
add() { T[$1]+=" $2"; }
bins=(new); [ -n "$old" ] && bins+=(old)
bin() { if [ "$1" = new ]; then echo "$new"; else echo "$old"; fi; }
for ((i = 1; i <= runs; i++)); do
  # Floors, once per round.
  mkdir -p "$work/dd"
  add dd "$(secs dd if=/dev/urandom of="$work/dd/blob.bin" bs=1M count=200 status=none)"
  rm -rf "$work/cp"; drop
  add cp "$(secs cp -a "$work/ctx/wide" "$work/cp")"
  rm -rf "$work/cp" "$work/dd"
  for b in "${bins[@]}"; do
    r=$(bin "$b")
    fresh "$r"; add "$b/single" "$(secs build "$r" build -q -t floor/single:1 "$work/ctx/single")"
    if [ "$i" = 1 ]; then
      # Disk blocks the store uses against its image's layer bytes (the
      # tars' sizes, as the manifest lists them).
      used=$(du -s -B1 "$work/store" | awk '{print $1}')
      layers=$(RBK_ROOT=$work/store "$r" inspect floor/single:1 | sed -n 's/^ *"Size": \([0-9]*\).*/\1/p')
      T[$b/store]=$(echo "$used / $layers" | bc -l)
    fi
    fresh "$r"; add "$b/one-stage" "$(secs build "$r" build -q -f "$work/one-stage.Dockerfile" "$work/ctx/multistage")"
    fresh "$r"; add "$b/multistage" "$(secs build "$r" build -q "$work/ctx/multistage")"
    fresh "$r"; drop; add "$b/wide" "$(secs build "$r" build -q "$work/ctx/wide")"
  done
done
m() { # shellcheck disable=SC2086
  median ${T[$1]}; }
printf '%s, %s rounds, %s cores\n' "$(date -u +%F)" "$runs" "$(nproc)"
printf 'floors: dd 200 MB %.3f s, cp -a wide %.3f s\n' "$(m dd)" "$(m cp)"
for b in "${bins[@]}"; do
  printf '%-4s single %.3f s (%.2fx dd) | multistage %.3f s (%.2fx one stage %.3f s) | wide %.3f s (%.2fx cp -a) | store %.2fx its layers\n' \
    "$b" "$(m "$b/single")" "$(echo "$(m "$b/single") / $(m dd)" | bc -l)" \
    "$(m "$b/multistage")" "$(echo "$(m "$b/multistage") / $(m "$b/one-stage")" | bc -l)" "$(m "$b/one-stage")" \
    "$(m "$b/wide")" "$(echo "$(m "$b/wide") / $(m cp)" | bc -l)" "${T[$b/store]}"
done
