#!/usr/bin/env bash
# `rbk push` and `rbk pull` of a ~200 MB image (4 layers of 50 MB random
# bytes) against `skopeo copy` of the same image to and from the same local
# registry (Debian's docker-registry), in one run. rbk's store is an OCI
# image layout, so skopeo reads the very same blobs (`oci:$RBK_ROOT:NAME`).
# The store keeps layers uncompressed; both tools gzip them for the
# registry, so a first push includes compression (rbk's variant records
# are deleted before it, so every run compresses). A second rbk push of the
# same image to a new repository reuses the variants: it only uploads.
# Each push goes to a new repository, so every blob is really uploaded;
# each pull goes to an empty store / directory. Each run has its own fresh
# registry, so neither tool can mount blobs it saw in an earlier run.
#
#   bench/registry.sh                  # RUNS=3 by default; RBK=path to skip the build
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/registry
runs=${RUNS:-3}
mkdir -p "$work"
command -v skopeo >/dev/null || { echo "bench: skopeo is not installed" >&2; exit 1; }
registry=/usr/bin/docker-registry
[ -x "$registry" ] || { echo "bench: $registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
use_release_rbk
rbk=$RBK
export RBK_ROOT=$work/root
export RBK_AUTH_FILE=$work/auth.json

# The image: FROM scratch plus four COPY layers of 50 MB random bytes,
# built into a fresh store with rbk's default layer compression.
ctx=$work/ctx
if [ ! -f "$ctx/d.bin" ]; then
  rm -rf "$ctx"; mkdir -p "$ctx"
  printf 'FROM scratch\n' >"$ctx/Dockerfile"
  for f in a b c d; do
    head -c 52428800 /dev/urandom >"$ctx/$f.bin"
    printf 'COPY %s.bin /%s.bin\n' "$f" "$f" >>"$ctx/Dockerfile"
  done
fi
rm -rf "$RBK_ROOT"
"$rbk" build --progress plain -t localhost/regbench:latest "$ctx" >/dev/null 2>&1
# A compressible one too (random bytes are the cheapest case for push's
# gzip, which stores what does not compress): this machine's /usr/bin,
# executables as real layers mostly hold, imported as one layer.
tar -C /usr -cf "$work/usr-bin.tar" bin
"$rbk" import "$work/usr-bin.tar" localhost/regbench-bin:latest >/dev/null
bin_mb=$(( $(stat -c %s "$work/usr-bin.tar") / 1000000 ))
rm -f "$work/usr-bin.tar"

# A fresh registry per run, on a new port with empty storage: skopeo keeps
# a cache of where it saw blobs and would otherwise mount them from an
# earlier run's repository instead of uploading them.
trap stop_registry EXIT

rp=(); r2=(); sp=(); rl=(); sl=(); bp=(); b2=(); bs=()
for ((i = 1; i <= runs; i++)); do
  stop_registry; start_registry "$work"
  rm -rf "$work/pulled-root" "$work/skopeo-oci" "$RBK_ROOT/variants"
  rp+=("$(t "$rbk" push localhost/regbench:latest "$host/rbk-$i:latest")")
  r2+=("$(t "$rbk" push localhost/regbench:latest "$host/rbk-again-$i:latest")")
  sp+=("$(t skopeo copy -q --dest-tls-verify=false "oci:$RBK_ROOT:localhost/regbench:latest" "docker://$host/skopeo-$i:latest")")
  rl+=("$(t "$rbk" --root "$work/pulled-root" pull "$host/rbk-$i:latest")")
  sl+=("$(t skopeo copy -q --src-tls-verify=false "docker://$host/skopeo-$i:latest" "oci:$work/skopeo-oci:big")")
  bp+=("$(t "$rbk" push localhost/regbench-bin:latest "$host/rbk-bin-$i:latest")")
  b2+=("$(t "$rbk" push localhost/regbench-bin:latest "$host/rbk-bin-again-$i:latest")")
  bs+=("$(t skopeo copy -q --dest-tls-verify=false "oci:$RBK_ROOT:localhost/regbench-bin:latest" "docker://$host/skopeo-bin-$i:latest")")
done
size=$(du -sm "$work/skopeo-oci" | cut -f1)
# What each tool sent (both should be gzip layers).
for who in rbk skopeo rbk-bin skopeo-bin; do
  skopeo inspect --raw --tls-verify=false "docker://$host/$who-$runs:latest" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); l=m["layers"]; print(sys.argv[1], "pushed", len(l), "layers,", sorted({x["mediaType"].split(".")[-1] for x in l}), round(sum(x["size"] for x in l)/1e6, 1), "MB")' "$who"
done
printf '\nimage: %s MB in 4 layers; local docker-registry; medians of %s runs (seconds)\n' "$size" "$runs"
printf '%-40s %8s %8s %7s\n' "measure" "rbk" "skopeo" "ratio"
row "push (store -> registry, gzip)" "$(median "${rp[@]}")" "$(median "${sp[@]}")"
printf '%-40s %8.3f %8s %7s\n' "push again (gzip variants reused)" "$(median "${r2[@]}")" "-" "-"
row "push /usr/bin, $bin_mb MB (gzip)" "$(median "${bp[@]}")" "$(median "${bs[@]}")"
printf '%-40s %8.3f %8s %7s\n' "push /usr/bin again (reused)" "$(median "${b2[@]}")" "-" "-"
row "pull (registry -> empty store)" "$(median "${rl[@]}")" "$(median "${sl[@]}")"
echo "(ratio = skopeo / rbk)"
