#!/usr/bin/env bash
# The cost of one empty RUN step (`RUN true`, cache off) with each network:
# none (a namespace with only loopback) and default (a namespace connected
# by slirp4netns), against a build with no RUN at all (the rest of a build's
# fixed cost). Prints medians over RUNS builds and the per-step overhead.
#
#   sudo bench/run-overhead.sh            # RUNS=9
#   RBK=path/to/rbk sudo bench/run-overhead.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/run-overhead
runs=${RUNS:-9}
mkdir -p "$work"
use_release_rbk
export RBK_ROOT=$work/root
rm -rf "$RBK_ROOT"
make_busybox_tar "$work/rootfs" "$work/busybox.tar"
"$RBK" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
for c in norun run; do mkdir -p "$work/$c"; done
printf 'FROM localhost/busybox:latest\nENV A=1\n' >"$work/norun/Dockerfile"
printf 'FROM localhost/busybox:latest\nRUN true\n' >"$work/run/Dockerfile"
measure() { # NAME ARGS...
  local t=()
  for _ in $(seq "$runs"); do t+=("$(t "$RBK" build --no-cache --progress plain "$@")"); done
  median "${t[@]}"
}
base=$(measure "$work/norun")
none=$(measure --network none "$work/run")
default=$(measure "$work/run")
printf '%-34s %8.3f s\n' "build without RUN" "$base"
printf '%-34s %8.3f s  (RUN true: %3.0f ms)\n' "RUN true, --network none" "$none" "$(echo "($none - $base) * 1000" | bc -l)"
printf '%-34s %8.3f s  (RUN true: %3.0f ms)\n' "RUN true, default network" "$default" "$(echo "($default - $base) * 1000" | bc -l)"
