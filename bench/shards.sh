#!/usr/bin/env bash
# Fleet builds split into shards (`rbk plan` + `rbk build --shard I/N`),
# measured on one machine: a 12-target graph of real work (each target one
# RUN that sleeps, writes a few MB and hashes them), built by N = 1, 2, 4
# builders started at once, each with its own fresh store and `-j 1` (one
# builder models one machine with one worker), sharing one loopback
# docker-registry that is new for every measurement. Against it: the
# bound max(critical path, total / N) from the plan's recorded durations,
# and the bake-action matrix that splits the leaf targets over N builders
# with no shared cache (each rebuilds the bases it needs).
#
#   sudo bench/shards.sh                 # RUNS=3 rounds
#   sudo RBK=/path/to/rbk bench/shards.sh   # that binary, no cargo build
#
# Each builder reaches the registry through its own port of a counting
# TCP forwarder (bench/tcpcount.py), which gives the bytes it moved.
# Needs root, docker-registry, curl, bc, python3, jq.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/shards
runs=${RUNS:-3}
mkdir -p "$work"
[ -x /usr/bin/docker-registry ] || { echo "bench: docker-registry is not installed" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench: jq is not installed" >&2; exit 1; }
use_release_rbk
rbk=$RBK

if [ ! -f "$work/busybox-oci.tar" ]; then
  make_busybox_tar "$work/busybox-rootfs" "$work/busybox.tar"
  rm -rf "$work/base-root"
  "$rbk" --root "$work/base-root" import "$work/busybox.tar" localhost/busybox:latest --change 'CMD ["/bin/sh"]' >/dev/null
  "$rbk" --root "$work/base-root" save -o "$work/busybox-oci.tar" localhost/busybox:latest
fi
export BENCH_LOG=$work/bench.log
: >"$BENCH_LOG"

# The graph: NAME PARENT SLEEP MB CPU. PARENT "-" is the busybox base;
# CPU is how many times the target's MB of random bytes are hashed.
# Three levels under one expensive base (base; mid-a, mid-b; their
# leaves, and c1 right on base), and three independent targets.
graph=(
  "base - 3 4 12"
  "mid-a base 2 2 6"
  "mid-b base 2 2 6"
  "a1 mid-a 1.5 2 6"
  "a2 mid-a 1.5 2 6"
  "a3 mid-a 1.5 2 6"
  "b1 mid-b 1.5 2 6"
  "b2 mid-b 1.5 2 6"
  "c1 base 1.5 2 6"
  "solo1 - 2.5 2 6"
  "solo2 - 2.5 2 6"
  "solo3 - 2.5 2 6"
)
leaves=(a1 a2 a3 b1 b2 c1 solo1 solo2 solo3)
ctx=$work/ctx
rm -rf "$ctx"; mkdir -p "$ctx"
run='RUN sleep $S && mkdir -p /out && head -c ${MB}000000 /dev/urandom > /out/$NAME.bin && for i in $(seq $CPU); do sha256sum /out/$NAME.bin; done > /out/$NAME.sum'
printf 'FROM localhost/busybox:latest\nARG NAME\nARG S\nARG MB\nARG CPU\n%s\n' "$run" >"$ctx/root.Dockerfile"
printf 'FROM parent\nARG NAME\nARG S\nARG MB\nARG CPU\n%s\n' "$run" >"$ctx/child.Dockerfile"
{
  # Each builder pushes through its own forwarder port: REG is set per builder.
  printf '[variable.REG]\ndefault = "127.0.0.1:5000"\n'
  for g in "${graph[@]}"; do
    read -r name parent s mb cpu <<<"$g"
    printf '\n[target.%s]\n' "$name"
    if [ "$parent" = - ]; then
      printf 'dockerfile = "root.Dockerfile"\n'
    else
      printf 'dockerfile = "child.Dockerfile"\ncontexts = { parent = "target:%s" }\n' "$parent"
    fi
    printf 'args = { NAME = "%s", S = "%s", MB = "%s", CPU = "%s" }\n' "$name" "$s" "$mb" "$cpu"
    printf 'tags = ["${REG}/shards/%s:1"]\n' "$name"
  done
  printf '\n[group.default]\ntargets = [%s]\n' "$(printf '"%s", ' "${leaves[@]}" | sed 's/, $//')"
} >"$ctx/rbk.toml"

# store DIR: a fresh store holding only the base.
store() { rm -rf "$1"; "$rbk" --root "$1" load -i "$work/busybox-oci.tar" >/dev/null; }

# The counting forwarder: start_counter N sets ports[1..N]; stop_counter
# writes their counts to $work/counts.json.
cntpid=
ports=()
start_counter() {
  local n=$1
  mapfile -t ports < <(python3 -c "
import socket
ss=[socket.socket() for _ in range($n)]
for s in ss: s.bind(('127.0.0.1',0))
for s in ss: print(s.getsockname()[1])")
  ports=(0 "${ports[@]}")
  rm -f "$work/counts.json" "$work/counter.out"
  python3 "$repo/bench/tcpcount.py" "$work/counts.json" "${host##*:}" "${ports[@]:1}" >"$work/counter.out" 2>&1 &
  cntpid=$!
  for _ in $(seq 100); do grep -q ready "$work/counter.out" 2>/dev/null && return; sleep 0.05; done
  echo "bench: the counting forwarder did not start" >&2; exit 1
}
stop_counter() {
  [ -n "$cntpid" ] || return 0
  kill -TERM "$cntpid" 2>/dev/null || true
  wait "$cntpid" 2>/dev/null || true
  cntpid=
}
trap 'stop_counter; stop_registry' EXIT

results=$work/results.tsv
: >"$results"

# launch ROUND KIND N JOBS: N builders at once, builder i running
# cmd_<KIND> I N JOBS from the context with REG at its forwarder port, each
# in a fresh store, against a new registry. One results line per builder:
# round kind N jobs builder seconds-since-the-start steps-run cached
# waited took-over bytes-up bytes-down.
launch() {
  local round=$1 kind=$2 n=$3 jobs=$4 i t0 end line
  stop_registry; start_registry "$work"
  for ((i = 1; i <= n; i++)); do store "$work/store-$i"; rm -f "$work/log-$i" "$work/end-$i" "$work/m-$i.json"; done
  start_counter "$n"
  sync
  t0=$EPOCHREALTIME
  local pids=()
  for ((i = 1; i <= n; i++)); do
    (
      cd "$ctx"
      rc=0
      REG=127.0.0.1:${ports[$i]} "cmd_$kind" "$i" "$n" "$jobs" >"$work/log-$i" 2>&1 || rc=$?
      echo "$EPOCHREALTIME $rc" >"$work/end-$i"
    ) &
    pids+=($!)
  done
  wait "${pids[@]}"
  stop_counter
  for ((i = 1; i <= n; i++)); do
    read -r end rc <"$work/end-$i"
    cat "$work/log-$i" >>"$BENCH_LOG"
    [ "$rc" = 0 ] || { echo "bench: $kind builder $i/$n failed (see $work/log-$i)" >&2; exit 1; }
    line=$(grep -o '[0-9]* steps\? run, [0-9]* cached' "$work/log-$i" | tail -1)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$kind" "$n" "$jobs" "$i" \
      "$(echo "$end - $t0" | bc -l)" \
      "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | grep -o '[0-9]* cached' | cut -d' ' -f1)" \
      "$(grep -o '[0-9]* steps taken from other shards' "$work/log-$i" | cut -d' ' -f1 || echo 0)" \
      "$(grep -o '[0-9]* made here after waiting' "$work/log-$i" | cut -d' ' -f1 || echo 0)" \
      "$(jq -r ".\"${ports[$i]}\"[0]" "$work/counts.json")" "$(jq -r ".\"${ports[$i]}\"[1]" "$work/counts.json")" \
      >>"$results"
  done
}
jobs_flag() { [ "$1" = default ] || echo "-j $1"; }
# A fleet shard: the plan made once from the recorded durations.
# shellcheck disable=SC2046
cmd_fleet() {
  local cache=type=registry,ref=$REG/shards/cache:main
  "$rbk" --root "$work/store-$1" build --progress plain rbk.toml --plan "$work/plan-$2.json" --shard "$1/$2" \
    --cache-from "$cache" --cache-to "$cache,mode=max" --push --metadata-file "$work/m-$1.json" $(jobs_flag "$3")
}
# A matrix job: leaves I, I+N, I+2N, … built with no shared cache.
# shellcheck disable=SC2046
cmd_matrix() {
  local mine=() k
  for ((k = $1 - 1; k < ${#leaves[@]}; k += $2)); do mine+=("${leaves[$k]}"); done
  "$rbk" --root "$work/store-$1" build --progress plain rbk.toml "${mine[@]}" --push $(jobs_flag "$3")
}

# Warm-up: one builder builds everything alone (-j 1) and records what each
# step took in its store's timings.json. The plans are made from a store
# holding only that file: every measurement below starts from a cold
# registry and cold stores, with the durations known.
store "$work/store-warm"
(cd "$ctx" && "$rbk" --root "$work/store-warm" build --progress plain -j 1 rbk.toml) >>"$BENCH_LOG" 2>&1
store "$work/planner"
cp "$work/store-warm/timings.json" "$work/planner/timings.json"
for n in 1 2 4; do
  (cd "$ctx" && "$rbk" --root "$work/planner" plan rbk.toml --shards "$n" --format json -o "$work/plan-$n.json")
  (cd "$ctx" && "$rbk" --root "$work/planner" plan rbk.toml --shards "$n") >"$work/plan-$n.txt"
  [ "$(jq -r .cost_unit "$work/plan-$n.json")" = seconds ] || { echo "bench: plan-$n is not in seconds" >&2; exit 1; }
done

for ((r = 1; r <= runs; r++)); do
  echo "round $r of $runs" >&2
  launch "$r" fleet 1 1
  launch "$r" fleet 2 1
  launch "$r" fleet 4 1
  launch "$r" matrix 1 1
  launch "$r" matrix 2 1
  launch "$r" matrix 4 1
  launch "$r" fleet 1 default
done

python3 - "$results" "$work" "$runs" <<'EOF'
import json, statistics, sys
from collections import defaultdict
results, work, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.rstrip("\n").split("\t") for l in open(results) if l.strip()]
by = defaultdict(lambda: defaultdict(list))
for r in rows:
    rnd, kind, n, jobs, b = r[0], r[1], int(r[2]), r[3], int(r[4])
    sec, ran, cached, waited, took, up, down = float(r[5]), int(r[6] or 0), int(r[7] or 0), int(r[8] or 0), int(r[9] or 0), int(r[10]), int(r[11])
    by[(kind, n, jobs)][rnd].append(dict(b=b, sec=sec, ran=ran, cached=cached, waited=waited, took=took, up=up, down=down))
med = statistics.median
def makespans(key):
    return [max(x["sec"] for x in bs) for _, bs in sorted(by[key].items())]
plans = {n: json.load(open(f"{work}/plan-{n}.json")) for n in (1, 2, 4)}
total = plans[1]["total"]
t1s = makespans(("fleet", 1, "1"))
print(f"\nplan (recorded durations, s): total {total}, critical path {plans[1]['critical_path']}")
for n in (1, 2, 4):
    print(f"  N={n}: expected makespan {plans[n]['makespan']}")
print(f"\nmakespan, medians of {runs} rounds (s); speedup = fleet N=1 (-j 1) / this, per round, then the median")
print(f"{'builders':<34} {'makespan':>8} {'speedup':>8} {'ideal':>8} {'ideal x':>8} {'ach/ideal':>9} {'RUNs':>5} {'MB moved':>9}")
for kind, n, jobs in [("fleet", 1, "1"), ("fleet", 1, "default"), ("fleet", 2, "1"), ("fleet", 4, "1"),
                      ("matrix", 1, "1"), ("matrix", 2, "1"), ("matrix", 4, "1")]:
    key = (kind, n, jobs)
    ms = makespans(key)
    sp = [a / b for a, b in zip(t1s, ms)]
    ideal = max(plans[n]["critical_path"], total / n)
    ideal_x = total / ideal
    runs_total = med([sum(x["ran"] for x in bs) for bs in by[key].values()])
    moved = med([sum(x["up"] + x["down"] for x in bs) for bs in by[key].values()]) / 1e6
    label = f"{kind} N={n} -j {jobs}"
    if jobs == "default":  # two workers on one machine: not a point of the bound
        print(f"{label:<34} {med(ms):8.2f} {med(sp):7.2f}x {'-':>8} {'-':>8} {'-':>9} {runs_total:5g} {moved:9.1f}")
    else:
        print(f"{label:<34} {med(ms):8.2f} {med(sp):7.2f}x {ideal:8.2f} {ideal_x:7.2f}x {med(sp) / ideal_x:9.2f} {runs_total:5g} {moved:9.1f}")
    print(f"{'':<34} rounds: " + " ".join(f"{m:.2f}" for m in ms))
print("\nper builder, medians of the rounds: seconds, steps run, cached, hit rate, taken from other shards, made after waiting, MB up, MB down")
for kind, n, jobs in [("fleet", 2, "1"), ("fleet", 4, "1"), ("matrix", 2, "1"), ("matrix", 4, "1")]:
    key = (kind, n, jobs)
    for b in range(1, n + 1):
        xs = [x for bs in by[key].values() for x in bs if x["b"] == b]
        f = lambda k: med([x[k] for x in xs])
        hit = med([x["cached"] / max(1, x["cached"] + x["ran"]) for x in xs])
        print(f"  {kind} N={n} builder {b}: {f('sec'):6.2f} s  run {f('ran'):g}  cached {f('cached'):g}  hit {hit:4.0%}  "
              f"taken {f('waited'):g}  after-wait {f('took'):g}  up {f('up') / 1e6:6.1f} MB  down {f('down') / 1e6:6.1f} MB")
EOF
echo "plans: $work/plan-{1,2,4}.txt; raw rows: $results" >&2
