#!/usr/bin/env bash
# What COPY --link buys: a Dockerfile whose RUN takes a while (`sleep`)
# followed by a COPY of a large file, built with and without --link in
# one run, alternating, medians of RUNS:
#   cold    --no-cache: the linked layer is made while the RUN runs;
#   rebase  after the RUN changes (a new build arg): without --link the
#           COPY runs again over the new parent, with --link its layer is
#           stacked as it is (its files linked, nothing copied).
#
#   sudo bench/link.sh      # RUNS=5 SIZE_MB=300 SLEEP=1 RBK=target/release/rbk
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5} SIZE_MB=${SIZE_MB:-300} SLEEP=${SLEEP:-1}
if [ -z "${RBK:-}" ]; then
  (cd "$repo" && cargo build --release -q -p rbk)
  RBK=${CARGO_TARGET_DIR:-$repo/target}/release/rbk
fi
work=${BENCH_DIR:-/var/tmp/rbk-bench}/link
rm -rf "$work/store" "$work/plain" "$work/link"; mkdir -p "$work/plain" "$work/link"
export RBK_ROOT=$work/store
RBK=$RBK RBK_BASES_CACHE=$work/bases "$repo/examples/bases/make-bases.sh" busybox >/dev/null 2>&1
[ -f "$work/big" ] || head -c "${SIZE_MB}M" /dev/urandom > "$work/big"
for kind in plain link; do
  flag=; [ "$kind" = link ] && flag=--link
  cp "$work/big" "$work/$kind/big"
  printf 'FROM localhost/busybox:latest\nARG N=0\nRUN sleep %s; echo $N > /n\nCOPY %s big /data/\n' \
    "$SLEEP" "$flag" > "$work/$kind/Dockerfile"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc -l; }
: > "$work/times"
for i in $(seq "$RUNS"); do
  row=
  for kind in plain link; do
    row="$row $(secs "$RBK" build --no-cache -q "$work/$kind")"
    # The cache has the first build (N=0); N=i changes only the RUN.
    "$RBK" build -q --build-arg N=0 "$work/$kind" >/dev/null 2>&1
    row="$row $(secs "$RBK" build -q --build-arg "N=$i$RANDOM" "$work/$kind")"
  done
  echo "$row" >> "$work/times"
done
col() { awk -v c="$1" '{print $c}' "$work/times" | median; }
pc=$(col 1) pr=$(col 2) lc=$(col 3) lr=$(col 4)
printf 'RUN sleep %s + COPY of %s MB, medians of %s (s):\n' "$SLEEP" "$SIZE_MB" "$RUNS"
printf '  cold:   plain %.3f  --link %.3f  (%.2fx)\n' "$pc" "$lc" "$(echo "$lc / $pc" | bc -l)"
printf '  rebase: plain %.3f  --link %.3f  (%.2fx)\n' "$pr" "$lr" "$(echo "$lr / $pr" | bc -l)"
