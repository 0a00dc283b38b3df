#!/usr/bin/env bash
# Builds bench/cases with rbk and with buildah in the same run and
# prints medians and ratios: cold build, no-op rebuild, rebuild after
# changing a file only the last step reads, and three images at once.
#
#   sudo bench/build.sh                 # single multistage wide (RUNS=3)
#   CASES="single debian" RUNS=5 sudo bench/build.sh
#   BENCH_COMPRESSION=gzip sudo bench/build.sh   # layers gzipped at commit
#   RBK=path/to/rbk sudo bench/build.sh          # skip the release build
#
# Needs root, buildah and runc (Debian packages), busybox-static, and for
# the debian case debootstrap and the Debian archive. Work files go to
# $BENCH_DIR (default /var/tmp/rbk-bench); the 500 MB context of `wide` is
# made once and reused.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
cases_dir=$repo/bench/cases
work=${BENCH_DIR:-/var/tmp/rbk-bench}
runs=${RUNS:-3}
cases=${CASES:-single multistage wide}
mkdir -p "$work"

command -v buildah >/dev/null || { echo "bench: buildah is not installed (apt-get install buildah runc)" >&2; exit 1; }
use_release_rbk
rbk=$RBK
export RBK_ROOT=$work/rbk-root
buildah_opts=(--layers --runtime /usr/sbin/runc)

"$cases_dir/make-contexts.sh" "$work/ctx" >/dev/null
ctx=$work/ctx

# Base images, made once into both tools' stores.
base_busybox() {
  [ -f "$work/busybox.tar" ] && return
  make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
}
base_debian() {
  [ -f "$work/debian.tar" ] && return
  local r=$work/debian-rootfs
  rm -rf "$r"
  debootstrap --variant=minbase bookworm "$r" http://deb.debian.org/debian >/dev/null
  tar -C "$r" --numeric-owner -cf "$work/debian.tar" .
}
import_bases() {
  "$rbk" inspect localhost/busybox:latest >/dev/null 2>&1 ||
    "$rbk" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  if [ -f "$work/debian.tar" ]; then
    "$rbk" inspect localhost/debian:bookworm >/dev/null 2>&1 ||
      "$rbk" import "$work/debian.tar" localhost/debian:bookworm --change 'CMD ["bash"]' >/dev/null
  fi
  for img in busybox:latest debian:bookworm; do
    [ "$img" = debian:bookworm ] && [ ! -f "$work/debian.tar" ] && continue
    if ! buildah inspect "localhost/$img" >/dev/null 2>&1; then
      "$rbk" save -o "$work/save-${img%%:*}.tar" "localhost/$img"
      buildah pull -q "oci-archive:$work/save-${img%%:*}.tar" >/dev/null
      buildah tag "$(buildah images -q --filter reference="*${img%%:*}*" | head -1)" "localhost/$img" 2>/dev/null || true
    fi
  done
}
base_busybox
case " $cases " in *" debian "*) base_debian ;; esac

# Forget every cached build result but keep the base images.
reset_rbk() {
  rm -rf "$RBK_ROOT"
  import_bases
}
reset_buildah() {
  buildah rm -a >/dev/null 2>&1 || true
  local img
  for img in $(buildah images -q --filter reference='localhost/bench/*' 2>/dev/null); do
    buildah rmi -f "$img" >/dev/null 2>&1 || true
  done
  buildah rmi --prune >/dev/null 2>&1 || true
  import_bases
}

# time_cmd VAR cmd...: seconds into VAR; the command's output goes to a log.
time_cmd() {
  local __var=$1; shift
  local t0 t1
  t0=$(now)
  if ! "$@" >>"$work/bench.log" 2>&1; then
    echo "bench: failed: $* (see $work/bench.log)" >&2
    exit 1
  fi
  t1=$(now)
  printf -v "$__var" '%.3f' "$(echo "$t1 - $t0" | bc -l)"
}

# BENCH_COMPRESSION=gzip|zstd|none measures rbk with that layer compression;
# unset, rbk's default (uncompressed layers, as BuildKit keeps them).
comp=(${BENCH_COMPRESSION:+--compression "$BENCH_COMPRESSION"})
rbk_build() { "$rbk" build --progress plain "${comp[@]}" -t "bench/$1:latest" "$ctx/$1"; }
buildah_build() { buildah build "${buildah_opts[@]}" -t "bench/$1:latest" "$ctx/$1"; }

declare -A R B
echo "rbk $("$rbk" --version | awk '{print $2}') (${BENCH_COMPRESSION:-default} layers) vs $(buildah --version | awk '{print $1, $3}'), $runs runs each, $(nproc) cores" | tee "$work/bench.log"
for c in $cases; do
  for m in cold noop change_last; do R[$c/$m]=""; B[$c/$m]=""; done
  for ((i = 1; i <= runs; i++)); do
    reset_rbk; reset_buildah
    time_cmd t rbk_build "$c"; R[$c/cold]+=" $t"
    time_cmd t rbk_build "$c"; R[$c/noop]+=" $t"
    echo "$RANDOM $i" >"$ctx/$c/last/stamp.txt"
    time_cmd t rbk_build "$c"; R[$c/change_last]+=" $t"
    time_cmd t buildah_build "$c"; B[$c/cold]+=" $t"
    time_cmd t buildah_build "$c"; B[$c/noop]+=" $t"
    echo "$RANDOM $i" >"$ctx/$c/last/stamp.txt"
    time_cmd t buildah_build "$c"; B[$c/change_last]+=" $t"
  done
done

# Three images at once (no-op): one rbk.toml graph vs buildah one by one.
three=(single multistage)
if [ -f "$work/debian.tar" ]; then three+=(debian); else three+=(wide); fi
{
  for c in "${three[@]}"; do
    printf '[target.%s]\ncontext = "ctx/%s"\ntags = ["bench/%s:latest"]\n' "$c" "$c" "$c"
  done
} >"$work/rbk.toml"
R[three/noop]=""; B[three/noop]=""
reset_rbk; reset_buildah
"$rbk" build --progress plain "${comp[@]}" "$work/rbk.toml" >>"$work/bench.log" 2>&1
for c in "${three[@]}"; do buildah_build "$c" >>"$work/bench.log" 2>&1; done
for ((i = 1; i <= runs; i++)); do
  time_cmd t "$rbk" build --progress plain "${comp[@]}" "$work/rbk.toml"; R[three/noop]+=" $t"
  time_cmd t bash -c "$(declare -f buildah_build); buildah_opts=(${buildah_opts[*]}); ctx=$ctx; for c in ${three[*]}; do buildah_build \$c || exit 1; done"
  B[three/noop]+=" $t"
done

printf '\n%-26s %10s %10s %8s\n' "case / measure" "rbk (s)" "buildah (s)" "ratio"
for key in $(printf '%s\n' "${!R[@]}" | sort); do
  [ -n "${R[$key]}" ] || continue
  # shellcheck disable=SC2086
  r=$(median ${R[$key]}); b=$(median ${B[$key]})
  printf '%-26s %10.3f %10.3f %7.1fx\n' "$key" "$r" "$b" "$(echo "$b / $r" | bc -l)"
done
echo "(ratio = buildah / rbk, medians of $runs runs; three = ${three[*]})"
