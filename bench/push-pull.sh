#!/usr/bin/env bash
# Push of the same images by rbk, buildah and dockerd (`docker push`), on
# one core and on two, into a fresh loopback docker-registry per run.
#
# Images (built once by rbk, copied to buildah's and dockerd's own stores,
# untimed):
#   text   FROM scratch + three COPY layers of 60 MB of text each
#   single bench/cases/single (busybox base, a 200 MB RUN layer of random
#          bytes, small COPYs)
#   debian bench/cases/debian (a debootstrap'd bookworm base + nginx-light);
#          only with DEBIAN_TAR=<rootfs tar> and a reachable Debian archive
# Every tool keeps layers uncompressed and gzips them for the registry, so
# each push includes compression: rbk's gzip variants are deleted before
# each of its pushes ("fresh store"); buildah and dockerd keep none. Each
# run pushes to a new registry (new port), so nobody mounts or skips a
# blob seen in an earlier run. "rbk upload only" is a second rbk push with
# the variants kept, to a new registry: what is left once compression is
# free. 1 core = taskset -c 0 (dockerd's own threads too), 2 cores = 0,1.
#
# RBK_BEFORE=<another rbk binary> adds its fresh-store push beside (the
# same store: an rbk before streamed pushes, to compare in one run).
#
#   bench/push-pull.sh          # RUNS=3; RBK=path skips the build
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/push-pull
runs=${RUNS:-3}
mkdir -p "$work"
for tool in buildah skopeo /usr/sbin/dockerd /usr/bin/docker-registry taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done
use_release_rbk
export BENCH_LOG=$work/bench.log RBK_ROOT=$work/rbk-root
: >"$BENCH_LOG"
bh() { buildah --root "$work/buildah/root" --runroot "$work/buildah/run" "$@"; }

# The images, in rbk's store.
rm -rf "$RBK_ROOT"
"$repo/bench/cases/make-contexts.sh" "$work/ctx" >/dev/null
ctx=$work/ctx
words_context "$ctx/text" scratch
[ -f "$work/busybox.tar" ] || make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
"$RBK" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
images=(text single)
"$RBK" build -q -t localhost/bench/text:latest "$ctx/text" >>"$BENCH_LOG" 2>&1
"$RBK" build -q -t localhost/bench/single:latest "$ctx/single" >>"$BENCH_LOG" 2>&1
if [ -n "${DEBIAN_TAR:-}" ]; then
  "$RBK" import "$DEBIAN_TAR" localhost/debian:bookworm >/dev/null
  if "$RBK" build -q -t localhost/bench/debian:latest "$ctx/debian" >>"$BENCH_LOG" 2>&1; then
    images+=(debian)
  else
    echo "bench: the debian case did not build (no Debian archive?); left out" >&2
  fi
fi

# The same images in buildah's and dockerd's stores.
trap 'stop_registry; stop_dockerd' EXIT
start_dockerd "$work/dockerd"
rm -rf "$work/buildah"
for img in "${images[@]}"; do
  "$RBK" save -o "$work/$img.tar" "localhost/bench/$img:latest"
  id=$(bh pull -q "oci-archive:$work/$img.tar")
  bh tag "$id" "localhost/bench/$img:latest"
  dk load -q -i "$work/$img.tar" >/dev/null
  rm -f "$work/$img.tar"
done

# on CORES CMD...: CMD on those cores, dockerd too.
on() {
  local cores=$1; shift
  taskset -a -p -c "$cores" "$dockerpid" >/dev/null
  taskset -c "$cores" "$@"
}

declare -A T R
for ((i = 1; i <= runs; i++)); do
  for cores in 0 0,1; do
    stop_registry; start_registry "$work"
    for img in "${images[@]}"; do
      # First, so it cannot mount what the others pushed.
      if [ -n "${RBK_BEFORE:-}" ]; then
        rm -rf "$RBK_ROOT/variants"
        s=$(t taskset -c "$cores" "$RBK_BEFORE" push "localhost/bench/$img:latest" "$host/before/$img:$i")
        T[$img/$cores/before]+="$s "
      fi
      rm -rf "$RBK_ROOT/variants"
      read -r s k < <(peak_kb taskset -c "$cores" "$RBK" push "localhost/bench/$img:latest" "$host/rbk/$img:$i")
      T[$img/$cores/rbk]+="$s "; R[$img/$cores/rbk]+="$k "
      read -r s k < <(peak_kb taskset -c "$cores" buildah --root "$work/buildah/root" --runroot "$work/buildah/run" \
        push -q --tls-verify=false "localhost/bench/$img:latest" "docker://$host/buildah/$img:$i")
      T[$img/$cores/buildah]+="$s "; R[$img/$cores/buildah]+="$k "
      dk tag "localhost/bench/$img:latest" "$host/docker/$img:$i"
      s=$(t on "$cores" env DOCKER_HOST="$DOCKER_SOCK" /usr/bin/docker push -q "$host/docker/$img:$i")
      T[$img/$cores/docker]+="$s "
    done
    # Upload only: every image's variants made (untimed: each push above
    # deleted the others'), then a registry that has nothing.
    for img in "${images[@]}"; do
      "$RBK" push "localhost/bench/$img:latest" "$host/warm/$img:$i" >>"$BENCH_LOG" 2>&1
    done
    stop_registry; start_registry "$work"
    for img in "${images[@]}"; do
      s=$(t taskset -c "$cores" "$RBK" push "localhost/bench/$img:latest" "$host/again/$img:$i")
      T[$img/$cores/upload]+="$s "
    done
  done
done
taskset -a -p -c 0,1 "$dockerpid" >/dev/null

m() { median ${T[$1]}; }
mk() { echo "$(median ${R[$1]}) / 1024" | bc -l; }
echo "rbk $("$RBK" --version | awk '{print $2}'), $(bh --version | awk '{print $1, $3}'), dockerd $(dk version --format '{{.Server.Version}}'); medians of $runs runs, seconds; $(date -u '+%F %H:%M') UTC"
for img in "${images[@]}"; do
  printf '\n%s (pushed manifest: %s)\n' "$img" "$(skopeo inspect --raw --tls-verify=false "docker://$host/again/$img:$runs" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); l=m["layers"]; print(len(l), "layers,", round(sum(x["size"] for x in l)/1e6, 1), "MB gzip")')"
  printf '%-7s %8s %8s %8s %9s %9s %10s %8s %11s %12s\n' cores rbk buildah docker rbk/bah rbk/dkr "rbk upload" before "rbk RSS MB" "bah RSS MB"
  for cores in 0 0,1; do
    r=$(m "$img/$cores/rbk") b=$(m "$img/$cores/buildah") d=$(m "$img/$cores/docker") u=$(m "$img/$cores/upload")
    before=-; [ -z "${T[$img/$cores/before]:-}" ] || before=$(printf '%.3f' "$(m "$img/$cores/before")")
    printf '%-7s %8.3f %8.3f %8.3f %9.2f %9.2f %10.3f %8s %11.0f %12.0f\n' "$([ "$cores" = 0 ] && echo 1 || echo 2)" \
      "$r" "$b" "$d" "$(echo "$r / $b" | bc -l)" "$(echo "$r / $d" | bc -l)" "$u" "$before" \
      "$(mk "$img/$cores/rbk")" "$(mk "$img/$cores/buildah")"
  done
done
