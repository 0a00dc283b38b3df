#!/usr/bin/env bash
# A RUN step's fixed cost, with and without a network, in one run: 50
# chained `RUN echo i > /fi` over a busybox base, cache off, built by
#   rbk      --network none, and its default network (a namespace per step
#            connected by slirp4netns, made ahead by the build's pool)
#   buildah  build --layers, its default network and --network none
#   BuildKit dockerd (Debian's docker.io) on a private socket, data root
#            and exec root, no iptables and no bridge: --network none, and
#            --network host (its default network needs the bridge)
# beside the floor: 50 x (an overlay mount of the base + `unshare --fork
# --pid --mount-proc --net --uts --ipc --mount true` + umount). Medians of
# RUNS, ratios, and peak RSS (rbk and buildah: the largest process of the
# build; BuildKit: the daemon's high-water mark, the daemon included).
#
#   sudo bench/run-net.sh        # RUNS=3 STEPS=50 RBK=target/release/rbk
#   RBK_BEFORE=other/rbk         # adds that binary's two builds beside
#   PEERS=no                     # rbk and the floor only (no buildah, BuildKit)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
runs=${RUNS:-3}
steps=${STEPS:-50}
work=${BENCH_DIR:-/var/tmp/rbk-bench}/run-net
mkdir -p "$work"
for tool in buildah /usr/sbin/dockerd /usr/sbin/runc slirp4netns unshare; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install buildah runc docker.io slirp4netns)" >&2; exit 1; }
done
use_release_rbk
export BENCH_LOG=$work/bench.log RBK_ROOT=$work/rbk-root
: >"$BENCH_LOG"
make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
ctx=$work/ctx
mkdir -p "$ctx"
{ echo 'FROM localhost/busybox:latest'; for i in $(seq "$steps"); do echo "RUN echo $i > /f$i"; done; } >"$ctx/Dockerfile"

rm -rf "$RBK_ROOT"
"$RBK" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
"$RBK" save -o "$work/save-busybox.tar" localhost/busybox:latest
buildah rm -a >/dev/null 2>&1 || true
buildah rmi -a -f >/dev/null 2>&1 || true
buildah pull -q "oci-archive:$work/save-busybox.tar" >/dev/null
buildah tag "$(buildah images -q | head -1)" localhost/busybox:latest
trap 'stop_dockerd; umount "$work/floor/m" 2>/dev/null || true' EXIT
start_dockerd "$work/dockerd"
dk load -q -i "$work/save-busybox.tar" >/dev/null

# The floor: what each step cannot avoid (a rootfs mount and the namespaces
# of a RUN), with nothing else.
floor() {
  local d=$work/floor i
  for ((i = 1; i <= steps; i++)); do
    rm -rf "$d"; mkdir -p "$d/u" "$d/w" "$d/m"
    mount -t overlay overlay -o "lowerdir=$work/busybox-rootfs,upperdir=$d/u,workdir=$d/w" "$d/m"
    unshare --fork --pid --mount-proc --net --uts --ipc --mount true
    umount "$d/m"
  done
}
rbk_none() { peak_kb "$RBK" build -q --no-cache --network none "$ctx"; }
rbk_default() { peak_kb "$RBK" build -q --no-cache "$ctx"; }
before_none() { peak_kb "$RBK_BEFORE" build -q --no-cache --network none "$ctx"; }
before_default() { peak_kb "$RBK_BEFORE" build -q --no-cache "$ctx"; }
buildah_none() { peak_kb buildah build --layers --no-cache --runtime /usr/sbin/runc -q --network none "$ctx"; }
buildah_default() { peak_kb buildah build --layers --no-cache --runtime /usr/sbin/runc -q "$ctx"; }
buildkit() { # NETWORK
  local r
  dk builder prune -af >/dev/null 2>&1
  r=$(peak_kb env DOCKER_BUILDKIT=1 /usr/bin/docker -H "$DOCKER_SOCK" build --no-cache --network "$1" -q "$ctx")
  echo "${r% *} $(awk '/VmHWM/ {print $2}' /proc/"$dockerpid"/status)"
}
buildkit_none() { buildkit none; }
buildkit_host() { buildkit host; }

declare -A T M
tools="rbk_none rbk_default"
[ -z "${RBK_BEFORE:-}" ] || tools+=" before_none before_default"
[ "${PEERS:-yes}" = no ] || tools+=" buildah_none buildah_default buildkit_none buildkit_host"
echo "rbk $("$RBK" --version | awk '{print $2}'), BuildKit (dockerd $(dk version --format '{{.Server.Version}}')), $(buildah --version | awk '{print $1, $3}'); $steps chained RUNs, $runs runs, $(nproc) cores, $(date -u '+%F %H:%M') UTC"
for ((i = 1; i <= runs; i++)); do
  T[floor]+=" $(t floor)"
  for tool in $tools; do
    read -r s kb <<<"$($tool)"
    T[$tool]+=" $s"; M[$tool]+=" $kb"
  done
  T[floor]+=" $(t floor)"
done
m() { # shellcheck disable=SC2086
  median ${T[$1]}; }
fl=$(m floor) none=$(m rbk_none)
printf '\n%-28s %9s %9s %10s %9s\n' "$steps chained RUNs" seconds "x floor" "x rbk none" "peak MiB"
printf '%-28s %9.3f %9s %10s %9s\n' "floor (mount+unshare+umount)" "$fl" 1.00x - -
for tool in $tools; do
  s=$(m "$tool")
  printf '%-28s %9.3f %8.2fx %9.2fx %9.0f\n' "$tool" "$s" "$(echo "$s / $fl" | bc -l)" "$(echo "$s / $none" | bc -l)" \
    "$(echo "$(median ${M[$tool]}) / 1024" | bc -l)"
done
printf '\nrbk default / rbk none: %.2fx (goal <= 1.2); rbk none / floor: %.2fx (goal <= 1.3)\n' \
  "$(echo "$(m rbk_default) / $none" | bc -l)" "$(echo "$none / $fl" | bc -l)"
