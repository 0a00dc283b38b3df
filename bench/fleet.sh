#!/usr/bin/env bash
# A cache that travels, measured on one machine: three builders with fresh
# stores, each with the same checkout at its own path (another owner,
# other file times, as CI runners have), sharing one loopback registry.
# Builder 1 builds cold and exports its cache; builders 2 and 3 build from
# it. Then the export's cost against pushing the image alone, and the
# early-cutoff case (a comment change in the first of three stages).
#
#   sudo bench/fleet.sh                      # CASE=multistage RUNS=3
#   OLD_RBK=/path/to/older/rbk bench/fleet.sh   # adds the early-cutoff
#                                            # case with that binary
#
# Needs root, docker-registry, busybox-static, curl, bc, python3.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/fleet
runs=${RUNS:-3}
case_=${CASE:-multistage}
mkdir -p "$work"
[ -x /usr/bin/docker-registry ] || { echo "bench: docker-registry is not installed" >&2; exit 1; }
use_release_rbk
rbk=$RBK
"$repo/bench/cases/make-contexts.sh" "$work/ctx" >/dev/null

if [ ! -f "$work/busybox-oci.tar" ]; then
  make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
  rm -rf "$work/base-root"
  "$rbk" --root "$work/base-root" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  "$rbk" --root "$work/base-root" save -o "$work/busybox-oci.tar" localhost/busybox:latest
fi
trap stop_registry EXIT
export BENCH_LOG=$work/bench.log
: >"$BENCH_LOG"

# store N [BINARY]: a fresh store holding only the base.
store() { rm -rf "$work/store-$1"; "${2:-$rbk}" --root "$work/store-$1" load -i "$work/busybox-oci.tar" >/dev/null; }
# checkout N: the case's context at runner N's own path, owned by uid
# 1000+N, with new file times (cp without -p).
checkout() {
  local dir=$work/runner-$1/builds/$((RANDOM % 9))/app
  rm -rf "$work/runner-$1"; mkdir -p "$(dirname "$dir")"
  cp -r "$work/ctx/$case_" "$dir"
  chown -R "$((1000 + $1)):$((1000 + $1))" "$dir"
  echo "$dir"
}
# steps_run: the steps the last build ran, from its summary line.
steps_run() { grep -o '[0-9]* steps\? run' "$BENCH_LOG" | tail -1 | cut -d' ' -f1; }

cold=(); b2=(); b3=(); r2=(); r3=(); noop=(); pull=(); push=(); export_=(); export_min=()
for ((i = 1; i <= runs; i++)); do
  stop_registry; start_registry "$work"
  cache="type=registry,ref=$host/fleet/cache:main,mode=max"
  for n in 1 2 3; do store "$n"; done
  c1=$(checkout 1); c2=$(checkout 2); c3=$(checkout 3)
  cold+=("$(t "$rbk" --root "$work/store-1" build --progress plain -t "bench/$case_" --cache-to "$cache" "$c1")")
  noop+=("$(t "$rbk" --root "$work/store-1" build --progress plain -t "bench/$case_" "$c1")")
  b2+=("$(t "$rbk" --root "$work/store-2" build --progress plain -t "bench/$case_" --cache-from "$host/fleet/cache:main" "$c2")")
  r2+=("$(steps_run)")
  b3+=("$(t "$rbk" --root "$work/store-3" build --progress plain -t "bench/$case_" --cache-from "$host/fleet/cache:main" "$c3")")
  r3+=("$(steps_run)")
  # The image alone, pushed to an empty repository, then pulled into a
  # fresh store: the bytes a cache hit has to move at least.
  push+=("$(t "$rbk" --root "$work/store-1" push "bench/$case_" "$host/fleet/only-$i:1")")
  store 4
  pull+=("$(t "$rbk" --root "$work/store-4" pull "$host/fleet/only-$i:1")")
  # The export alone: a no-op build exporting to a new ref, less the no-op.
  e=$(t "$rbk" --root "$work/store-1" build --progress plain -t "bench/$case_" \
    --cache-to "type=registry,ref=$host/fleet/cache-$i:x,mode=max" "$c1")
  export_+=("$(echo "$e - ${noop[-1]}" | bc -l)")
  # mode=min: the image's own layers, as the push moves.
  e=$(t "$rbk" --root "$work/store-1" build --progress plain -t "bench/$case_" \
    --cache-to "type=registry,ref=$host/fleet/cache-min-$i:x" "$c1")
  export_min+=("$(echo "$e - ${noop[-1]}" | bc -l)")
done
printf '\ncase %s; 3 builders, 3 checkouts at 3 paths and owners; loopback docker-registry; medians of %s runs (s)\n' "$case_" "$runs"
printf '%-52s %8s\n' "builder 1: cold build + cache export" "$(median "${cold[@]}")"
printf '%-52s %8s\n' "builder 1: local no-op rebuild" "$(median "${noop[@]}")"
printf '%-52s %8s\n' "pull of the image alone into a fresh store" "$(median "${pull[@]}")"
printf '%-52s %8s   steps run: %s\n' "builder 2: fresh store, --cache-from" "$(median "${b2[@]}")" "${r2[*]}"
printf '%-52s %8s   steps run: %s\n' "builder 3: fresh store, --cache-from" "$(median "${b3[@]}")" "${r3[*]}"
bound=$(echo "1.5 * ($(median "${noop[@]}") + $(median "${pull[@]}"))" | bc -l)
printf '%-52s %8.3f\n' "goal for builders 2, 3: 1.5 x (no-op + pull)" "$bound"
printf '%-52s %8s\n' "push of the image alone" "$(median "${push[@]}")"
printf '%-52s %8.3f\n' "cache export alone (mode=max: the stages' layers too)" "$(median "${export_[@]}")"
printf '%-52s %8.3f\n' "cache export alone (mode=min: the image's layers)" "$(median "${export_min[@]}")"
printf '%-52s %7.2fx\n' "export mode=max / push" "$(echo "$(median "${export_[@]}") / $(median "${push[@]}")" | bc -l)"
printf '%-52s %7.2fx (goal <= 1.2x)\n' "export mode=min / push" "$(echo "$(median "${export_min[@]}") / $(median "${push[@]}")" | bc -l)"

# Early cutoff: three stages; a comment change in the first stage's source.
cutoff() {
  local bin=$1 ctx=$work/cutoff
  rm -rf "$ctx"; mkdir -p "$ctx"
  cat >"$ctx/Dockerfile" <<'EOF'
FROM localhost/busybox:latest AS build
COPY src.txt /src/
RUN mkdir /out && sleep 1 && grep -v '^#' /src/src.txt > /out/app
FROM localhost/busybox:latest AS mid
COPY --from=build /out /out
RUN sleep 1 && cat /out/app /out/app > /mid
FROM localhost/busybox:latest
COPY --from=mid /mid /final
RUN sleep 1 && wc -c /final > /size
EOF
  printf '# version 1\nprint hello\n' >"$ctx/src.txt"
  store cut "$bin"
  "$bin" --root "$work/store-cut" build --network none -t cut "$ctx" >>"$BENCH_LOG" 2>&1
  printf '# version 2, a comment only\nprint hello\n' >"$ctx/src.txt"
  t "$bin" --root "$work/store-cut" build --progress plain --network none -t cut "$ctx"
}
if [ -n "${OLD_RBK:-}" ]; then
  old=(); new=(); ro=(); rn=()
  for ((i = 1; i <= runs; i++)); do
    old+=("$(cutoff "$OLD_RBK")"); ro+=("$(steps_run)")
    new+=("$(cutoff "$rbk")"); rn+=("$(steps_run)")
  done
  printf '\nearly cutoff: three stages, each RUN sleeps 1 s; a comment change in stage 1\n'
  printf '%-52s %8s   steps run: %s\n' "before ($OLD_RBK)" "$(median "${old[@]}")" "${ro[*]}"
  printf '%-52s %8s   steps run: %s\n' "after" "$(median "${new[@]}")" "${rn[*]}"
fi
