#!/usr/bin/env bash
# What a second, emulated platform costs the native one: a CPU-bound RUN
# (a busybox shell loop) built for linux/amd64 alone and for
# linux/amd64,linux/arm64 in one build (arm64 under QEMU), --no-cache,
# alternating, medians of RUNS. Reports, from --progress rawjson, the
# amd64 RUN step and the amd64 image's finish time in both builds, and the
# emulated RUN against the native one.
#
#   sudo bench/multi-platform.sh      # RUNS=5 LOOP=300000 RBK=target/release/rbk
# Needs qemu-user-static and Debian's busybox-static:arm64 package (fetched
# with `dpkg --add-architecture arm64; apt-get download` into the work dir).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-5} LOOP=${LOOP:-300000}
if [ -z "${RBK:-}" ]; then
  (cd "$repo" && cargo build --release -q -p rbk)
  RBK=${CARGO_TARGET_DIR:-$repo/target}/release/rbk
fi
[ "$(uname -m)" = x86_64 ] || { echo "needs an x86_64 host" >&2; exit 1; }
work=${BENCH_DIR:-/var/tmp/rbk-bench}/multi-platform
rm -rf "$work/store" "$work/ctx" "$work/arm64"; mkdir -p "$work"
deb=$(ls "$work"/busybox-static_*_arm64.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  dpkg --add-architecture arm64 && apt-get update -qq
  (cd "$work" && apt-get download -qq busybox-static:arm64)
  deb=$(ls "$work"/busybox-static_*_arm64.deb | head -1)
fi
export RBK_ROOT=$work/store
RBK=$RBK RBK_BASES_CACHE=$work/bases "$repo/examples/bases/make-bases.sh" busybox >/dev/null 2>&1
mkdir -p "$work/arm64"
dpkg-deb -x "$deb" "$work/arm64/deb"
mkdir -p "$work/arm64/fs/bin" "$work/arm64/fs/tmp"
cp "$work/arm64/deb/bin/busybox" "$work/arm64/fs/bin/"
ln -s busybox "$work/arm64/fs/bin/sh"
tar -C "$work/arm64/fs" --numeric-owner -cf "$work/arm64.tar" .
"$RBK" save -o "$work/amd64.tar" localhost/busybox:latest
"$RBK" manifest create localhost/mbb:1 localhost/busybox:latest >/dev/null 2>&1
"$RBK" import --platform linux/arm64 "$work/arm64.tar" localhost/mbb:1 >/dev/null 2>&1
mkdir -p "$work/ctx"
cat > "$work/ctx/Dockerfile" <<DF
FROM localhost/mbb:1
ARG TARGETARCH
RUN i=0; while [ \$i -lt $LOOP ]; do i=\$((i+1)); done; echo \$TARGETARCH > /arch
DF
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# The duration (ms) of the RUN step of PLATFORM, and when it finished.
field() { grep "\"status\":\"done\"" | grep -- "$1" | grep '"kind":"exec"' | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"; }
: > "$work/both"
for _ in $(seq "$RUNS"); do
  "$RBK" build --no-cache --progress rawjson --platform linux/amd64 "$work/ctx" 2> "$work/a.json" >/dev/null
  "$RBK" build --no-cache --progress rawjson --platform linux/amd64,linux/arm64 "$work/ctx" 2> "$work/b.json" >/dev/null
  echo "$(field "" duration_ms < "$work/a.json") $(field "" elapsed_ms < "$work/a.json") $(field linux/amd64 duration_ms < "$work/b.json") $(field linux/amd64 elapsed_ms < "$work/b.json") $(field linux/arm64 duration_ms < "$work/b.json") $(field linux/arm64 elapsed_ms < "$work/b.json")" >> "$work/both"
done
col() { awk -v c="$1" '{print $c}' "$work/both" | median; }
a_run=$(col 1) a_end=$(col 2) b_run=$(col 3) b_end=$(col 4) e_run=$(col 5) e_end=$(col 6)
printf 'amd64 alone: RUN %d ms, image done at %d ms\n' "$a_run" "$a_end"
printf 'amd64 in the two-platform build: RUN %d ms (%.2fx), done at %d ms (%.2fx)\n' \
  "$b_run" "$(echo "$b_run / $a_run" | bc -l)" "$b_end" "$(echo "$b_end / $a_end" | bc -l)"
printf 'arm64 (emulated) in the same build: RUN %d ms (%.1fx the native RUN), done at %d ms\n' \
  "$e_run" "$(echo "$e_run / $b_run" | bc -l)" "$e_end"
