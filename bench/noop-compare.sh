#!/usr/bin/env bash
# No-op rebuilds of two rbk binaries side by side, in one run (for a change
# that must not slow the cached path down):
#
#   sudo bench/noop-compare.sh OLD_RBK NEW_RBK     # RUNS=11
#
# Each binary gets its own store with the busybox base; the single and
# multistage bench cases are built once, then rebuilt RUNS times, the two
# binaries alternating. Prints medians and the ratio.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
OLD=$1 NEW=$2 RUNS=${RUNS:-11}
work=${BENCH_DIR:-/var/tmp/rbk-bench}/noop-compare
rm -rf "$work"; mkdir -p "$work"
"$repo/bench/cases/make-contexts.sh" "$work/ctx" >/dev/null
for v in old new; do
  bin=$OLD; [ $v = new ] && bin=$NEW
  RBK=$bin RBK_ROOT=$work/store-$v RBK_BASES_CACHE=$work/bases \
    "$repo/examples/bases/make-bases.sh" busybox >/dev/null 2>&1
  for c in single multistage; do
    RBK_ROOT=$work/store-$v "$bin" build -q "$work/ctx/$c" >/dev/null
  done
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for c in single multistage; do
  : > "$work/t-old"; : > "$work/t-new"
  for _ in $(seq "$RUNS"); do
    for v in old new; do
      bin=$OLD; [ $v = new ] && bin=$NEW
      s=$(date +%s.%N)
      RBK_ROOT=$work/store-$v "$bin" build -q "$work/ctx/$c" >/dev/null
      e=$(date +%s.%N)
      echo "$e - $s" | bc >> "$work/t-$v"
    done
  done
  o=$(median < "$work/t-old"); n=$(median < "$work/t-new")
  printf '%s noop: old %.3f s, new %.3f s, new/old %.2fx\n' "$c" "$o" "$n" "$(echo "$n / $o" | bc -l)"
done
