#!/usr/bin/env bash
# An rbk.toml of N targets (each: the busybox base, a RUN every target
# shares, a RUN and a COPY of its own): `rbk graph`, a cold build and
# no-op rebuilds, medians of RUNS.
#
#   sudo bench/many-targets.sh            # N=200 RUNS=5 RBK=target/release/rbk
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-200} RUNS=${RUNS:-5}
if [ -z "${RBK:-}" ]; then
  (cd "$repo" && cargo build --release -q -p rbk)
  RBK=${CARGO_TARGET_DIR:-$repo/target}/release/rbk
fi
work=${BENCH_DIR:-/var/tmp/rbk-bench}/many-targets
rm -rf "$work"; mkdir -p "$work"
for i in $(seq 1 "$N"); do
  mkdir -p "$work/t$i"
  printf 'FROM localhost/busybox:latest\nRUN echo common > /c\nRUN echo %s > /n\nCOPY f /f\n' "$i" > "$work/t$i/Dockerfile"
  echo "x$i" > "$work/t$i/f"
  printf '[target.t%s]\ncontext = "t%s"\ntags = ["example/t%s:1"]\n\n' "$i" "$i" "$i" >> "$work/rbk.toml"
done
export RBK_ROOT=$work/store
RBK=$RBK RBK_BASES_CACHE=$work/bases "$repo/examples/bases/make-bases.sh" busybox >/dev/null 2>&1
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
cold=$(timed "$RBK" build -q "$work/rbk.toml")
graph=$(for _ in $(seq "$RUNS"); do timed "$RBK" graph "$work/rbk.toml"; done | median)
noop=$(for _ in $(seq "$RUNS"); do timed "$RBK" build -q "$work/rbk.toml"; done | median)
printf '%s targets: graph %.3f s, cold build %.2f s, no-op rebuild %.3f s\n' "$N" "$graph" "$cold" "$noop"
