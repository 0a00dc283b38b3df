#!/usr/bin/env bash
# rbk, BuildKit (dockerd from Debian's docker.io) and buildah on the bench
# cases in one run, beside each case's floor: cold build, no-op rebuild and
# rebuild after changing a file only the last COPY reads; medians of RUNS
# and ratios to rbk; peak RSS of the build process (rbk, buildah; for
# BuildKit the daemon's high-water mark, which includes the daemon itself).
# Floors: single's RUN alone (`dd` of 200 MB), multistage's one stage alone
# (rbk), wide's `cp -a` of the context (page cache dropped before each
# cold build and before the cp).
#
#   sudo bench/vs.sh          # CASES="single multistage wide" RUNS=3 RBK=target/release/rbk
#
# Then the cases of issue 30, each its own script with its own floor,
# peers and peak RSS (EXTRA="" skips them): ci-cache (the fully cached CI
# build: time and bytes downloaded), run-net (50 chained RUNs with and
# without a network), push-pull (push on 1 and 2 cores), pull-first-run
# (pull + first run against a parallel gunzip | tar).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
runs=${RUNS:-3}
cases=${CASES:-single multistage wide}
work=${BENCH_DIR:-/var/tmp/rbk-bench}/vs
mkdir -p "$work"
for tool in buildah /usr/sbin/dockerd /usr/sbin/runc; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install buildah runc docker.io)" >&2; exit 1; }
done
use_release_rbk
export BENCH_LOG=$work/bench.log RBK_ROOT=$work/rbk-root
: >"$BENCH_LOG"
"$repo/bench/cases/make-contexts.sh" "$work/ctx" >/dev/null
ctx=$work/ctx
[ -f "$work/busybox.tar" ] || make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
trap 'stop_dockerd' EXIT
start_dockerd "$work/dockerd"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

reset() {
  rm -rf "$RBK_ROOT"
  "$RBK" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  [ -f "$work/save-busybox.tar" ] || "$RBK" save -o "$work/save-busybox.tar" localhost/busybox:latest
  buildah rm -a >/dev/null 2>&1 || true
  buildah rmi -a -f >/dev/null 2>&1 || true
  buildah pull -q "oci-archive:$work/save-busybox.tar" >/dev/null
  buildah tag "$(buildah images -q | head -1)" localhost/busybox:latest
  dk rmi -f $(dk images -q) >/dev/null 2>&1 || true
  dk builder prune -af >/dev/null 2>&1
  dk load -q -i "$work/save-busybox.tar" >/dev/null
}
build_rbk() { peak_kb "$RBK" build -q -t "bench/$1:latest" "$ctx/$1"; }
build_buildah() { peak_kb buildah build --layers --runtime /usr/sbin/runc -q -t "bench/$1:latest" "$ctx/$1"; }
build_buildkit() {
  local r
  r=$(peak_kb env DOCKER_BUILDKIT=1 /usr/bin/docker -H "$DOCKER_SOCK" build --network host -q -t "bench/$1:latest" "$ctx/$1")
  echo "${r% *} $(awk '/VmHWM/ {print $2}' /proc/"$dockerpid"/status)"
}

declare -A T M
floor=()
echo "rbk $("$RBK" --version | awk '{print $2}'), BuildKit (dockerd $(dk version --format '{{.Server.Version}}')), $(buildah --version | awk '{print $1, $3}'); $runs runs, $(nproc) cores, $(date -u '+%F %H:%M') UTC"
for c in $cases; do
  for ((i = 1; i <= runs; i++)); do
    reset
    for tool in rbk buildkit buildah; do
      drop
      read -r s kb <<<"$(build_$tool "$c")"; T[$c/cold/$tool]+=" $s"; M[$c/$tool]+=" $kb"
      read -r s _ <<<"$(build_$tool "$c")"; T[$c/noop/$tool]+=" $s"
      echo "$RANDOM $i $tool" >"$ctx/$c/last/stamp.txt"
      read -r s _ <<<"$(build_$tool "$c")"; T[$c/change_last/$tool]+=" $s"
    done
    case $c in
      single) mkdir -p "$work/dd"; T[$c/floor]+=" $(t dd if=/dev/urandom of="$work/dd/x" bs=1M count=200 status=none)"; rm -rf "$work/dd" ;;
      multistage)
        printf 'FROM localhost/busybox:latest\nRUN sleep 2 && dd if=/dev/urandom of=/s1.bin bs=1M count=20 status=none\n' >"$work/one.Dockerfile"
        rm -rf "$RBK_ROOT"; "$RBK" import "$work/busybox.tar" localhost/busybox:latest >/dev/null
        T[$c/floor]+=" $(t "$RBK" build -q -f "$work/one.Dockerfile" "$ctx/$c")" ;;
      wide) rm -rf "$work/cp"; drop; T[$c/floor]+=" $(t cp -a "$ctx/$c" "$work/cp")"; rm -rf "$work/cp" ;;
    esac
  done
done
m() { # shellcheck disable=SC2086
  median ${T[$1]}; }
printf '\n%-24s %9s %9s %9s %9s %9s %9s\n' "case / measure" rbk BuildKit buildah "BK/rbk" "bah/rbk" "rbk/floor"
for c in $cases; do
  for k in cold noop change_last; do
    r=$(m "$c/$k/rbk") b=$(m "$c/$k/buildkit") h=$(m "$c/$k/buildah")
    fl=-; [ "$k" = cold ] && fl=$(printf '%.2fx' "$(echo "$r / $(m "$c/floor")" | bc -l)")
    printf '%-24s %9.3f %9.3f %9.3f %8.1fx %8.1fx %9s\n' "$c $k" "$r" "$b" "$h" "$(echo "$b / $r" | bc -l)" "$(echo "$h / $r" | bc -l)" "$fl"
  done
done
printf '\nfloors:'
for c in $cases; do printf ' %s %.3f s;' "$c" "$(m "$c/floor")"; done
printf ' (single: dd of 200 MB; multistage: one stage; wide: cp -a)\n'
printf 'peak RSS (MiB, median of the cold builds): '
for c in $cases; do
  printf '%s rbk %.0f / BuildKit daemon %.0f / buildah %.0f; ' "$c" \
    "$(echo "$(median ${M[$c/rbk]}) / 1024" | bc -l)" "$(echo "$(median ${M[$c/buildkit]}) / 1024" | bc -l)" "$(echo "$(median ${M[$c/buildah]}) / 1024" | bc -l)"
done
echo

extra=${EXTRA-ci-cache run-net push-pull pull-first-run}
if [ -n "$extra" ]; then
  # Each starts its own dockerd and registry.
  stop_dockerd
  for e in $extra; do
    printf '\n== %s\n' "$e"
    RBK=$RBK RUNS=$runs "$repo/bench/$e.sh"
  done
fi
