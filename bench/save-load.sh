#!/usr/bin/env bash
# `rbk save` and `rbk load` of a ~200 MB image against `skopeo copy` of the
# same image, in one run. rbk's store is an OCI image layout, so skopeo
# reads the very same blobs (`oci:$RBK_ROOT:NAME`).
#
#   sudo bench/save-load.sh            # RUNS=5 by default
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/save-load
runs=${RUNS:-5}
mkdir -p "$work"
command -v skopeo >/dev/null || { echo "bench: skopeo is not installed" >&2; exit 1; }
(cd "$repo" && cargo build --release -q -p rbk)
rbk=$repo/target/release/rbk
export RBK_ROOT=$work/root

# A ~200 MB image: busybox plus one 200 MB layer of random bytes.
if ! "$rbk" inspect localhost/big:latest >/dev/null 2>&1; then
  make_busybox_tar "$work/rootfs" "$work/busybox.tar"
  "$rbk" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
  mkdir -p "$work/ctx"
  printf 'FROM localhost/busybox:latest\nRUN head -c 209715200 /dev/urandom > /blob.bin\n' >"$work/ctx/Dockerfile"
  "$rbk" build --progress plain -t localhost/big:latest "$work/ctx" >/dev/null 2>&1
fi

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
printf '%-40s %8s %8s %7s\n' "measure" "rbk" "skopeo" "ratio"
row "export (save / copy to archive)" "$(median "${rs[@]}")" "$(median "${ss[@]}")"
row "import (load / copy from archive)" "$(median "${rl[@]}")" "$(median "${sl[@]}")"
echo "(ratio = skopeo / rbk)"
