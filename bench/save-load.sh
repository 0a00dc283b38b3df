#!/usr/bin/env bash
# `rbk save` and `rbk load` of a ~200 MB image against `skopeo copy` of the
# same image, in one run. rbk's store is an OCI image layout, so skopeo
# reads the very same blobs (`oci:$RBK_ROOT:NAME`).
#
#   sudo bench/save-load.sh            # RUNS=5 by default
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-/var/tmp/rbk-bench}/save-load
runs=${RUNS:-5}
mkdir -p "$work"
command -v skopeo >/dev/null || { echo "bench: skopeo is not installed" >&2; exit 1; }
(cd "$repo" && cargo build --release -q -p rbk)
rbk=$repo/target/release/rbk
export RBK_ROOT=$work/root

# A ~200 MB image: busybox plus one 200 MB layer of random bytes.
if ! "$rbk" inspect localhost/big:latest >/dev/null 2>&1; then
  r=$work/rootfs; rm -rf "$r"; mkdir -p "$r/bin" "$r/etc" "$r/tmp"
  cp /bin/busybox "$r/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"; printf 'root:x:0:\n' >"$r/etc/group"
  tar -C "$r" --numeric-owner -cf "$work/busybox.tar" .
  "$rbk" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
  mkdir -p "$work/ctx"
  printf 'FROM localhost/busybox:latest\nRUN head -c 209715200 /dev/urandom > /blob.bin\n' >"$work/ctx/Dockerfile"
  "$rbk" build --progress plain -t localhost/big:latest "$work/ctx" >/dev/null 2>&1
fi

now() { date +%s.%N; }
t() { local t0; t0=$(now); "$@" >/dev/null 2>&1 || { echo "bench: failed: $*" >&2; exit 1; }; echo "$(now) - $t0" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

rs=(); ss=(); rl=(); sl=()
for ((i = 1; i <= runs; i++)); do
  rm -f "$work/rbk.tar" "$work/skopeo.tar"; rm -rf "$work/loaded-root" "$work/skopeo-oci"
  rs+=("$(t "$rbk" save -o "$work/rbk.tar" localhost/big:latest)")
  ss+=("$(t skopeo copy -q "oci:$RBK_ROOT:localhost/big:latest" "docker-archive:$work/skopeo.tar:localhost/big:latest")")
  rl+=("$(t "$rbk" --root "$work/loaded-root" load -i "$work/rbk.tar")")
  sl+=("$(t skopeo copy -q "docker-archive:$work/rbk.tar" "oci:$work/skopeo-oci:big")")
done
size=$(du -m "$work/rbk.tar" | cut -f1)
printf '\nimage archive: %s MB; medians of %s runs (seconds)\n' "$size" "$runs"
printf '%-34s %8s %8s %7s\n' "measure" "rbk" "skopeo" "ratio"
r=$(median "${rs[@]}"); s=$(median "${ss[@]}")
printf '%-34s %8.3f %8.3f %6.1fx\n' "export (save / copy to archive)" "$r" "$s" "$(echo "$s / $r" | bc -l)"
r=$(median "${rl[@]}"); s=$(median "${sl[@]}")
printf '%-34s %8.3f %8.3f %6.1fx\n' "import (load / copy from archive)" "$r" "$s" "$(echo "$s / $r" | bc -l)"
echo "(ratio = skopeo / rbk)"
