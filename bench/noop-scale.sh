#!/usr/bin/env bash
# No-op and one-change rebuilds of `COPY files/ /data/` from contexts of
# 20,000 and 200,000 small files: what grows with the context's size (one
# lstat per file, the walk on the rayon pool) and what with the changes
# (only changed files are read and hashed; the stat cache answers the rest).
#
#   sudo bench/noop-scale.sh        # COUNTS="20000 200000" RUNS=5 RBK=target/release/rbk
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
COUNTS=${COUNTS:-20000 200000} RUNS=${RUNS:-5}
use_release_rbk
work=${BENCH_DIR:-/var/tmp/rbk-bench}/noop-scale
mkdir -p "$work"
[ -f "$work/busybox.tar" ] || make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
timed() { local s; s=$(now); "$@" >/dev/null 2>&1; echo "$(now) - $s" | bc -l; }
printf '%8s %10s %12s %14s\n' files noop one-change 1000-changes
for n in $COUNTS; do
  ctx=$work/ctx-$n
  if [ "$(find "$ctx/files" -type f 2>/dev/null | wc -l)" != "$n" ]; then
    rm -rf "$ctx"; mkdir -p "$ctx"
    python3 - "$ctx/files" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 200
for i in range(n):
    d = os.path.join(root, "d%05d" % (i // per))
    if i % per == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%03d" % (i % per)), "w") as f:
        f.write("file %d\n" % i)
PY
    printf 'FROM localhost/busybox:latest\nCOPY files/ /data/\n' >"$ctx/Dockerfile"
  fi
  export RBK_ROOT=$work/store-$n
  rm -rf "$RBK_ROOT"
  "$RBK" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
  "$RBK" build -q "$ctx" >/dev/null
  noop=() one=() many=()
  for r in $(seq "$RUNS"); do
    noop+=("$(timed "$RBK" build -q "$ctx")")
    echo "run $r" >"$ctx/files/d00000/f000"
    one+=("$(timed "$RBK" build -q "$ctx")")
    for f in $(seq 0 999); do echo "run $r" >"$ctx/files/d$(printf %05d $((f / 200)))/f$(printf %03d $((f % 200)))"; done
    many+=("$(timed "$RBK" build -q "$ctx")")
  done
  printf '%8s %9.3fs %11.3fs %13.3fs\n' "$n" "$(median "${noop[@]}")" "$(median "${one[@]}")" "$(median "${many[@]}")"
done
