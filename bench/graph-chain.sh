#!/usr/bin/env bash
# `rbk graph` of long stage chains: `FROM s{i-1} AS s{i}` with an ARG, ENV,
# RUN and COPY --from in each stage (issue 9). Prints the median wall time
# and peak RSS (/usr/bin/time) per chain length; compiling must stay linear.
#
#   bench/graph-chain.sh                  # RUNS=5, 1000 2000 4000 8000 stages
#   RBK=/path/to/other/rbk bench/graph-chain.sh   # time another build
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
. "$repo/bench/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/graph-chain
runs=${RUNS:-5}
sizes=${SIZES:-1000 2000 4000 8000}
mkdir -p "$work"
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is not installed (apt-get install time)" >&2; exit 1; }
if [ -z "${RBK:-}" ]; then
  (cd "$repo" && cargo build --release -q -p rbk)
  RBK=$repo/target/release/rbk
fi
# No store: base images are not looked up.
export RBK_ROOT=$work/no-store

printf '%-8s %10s %12s\n' stages seconds peak-MiB
for n in $sizes; do
  mkdir -p "$work/c$n"
  python3 - "$n" "$work/c$n/Dockerfile" <<'PY'
import sys
n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write("FROM scratch AS s0\n")
    for i in range(1, n):
        f.write(f"FROM s{i-1} AS s{i}\nARG A{i}=x\nENV E{i}=$A{i}\nRUN echo $E{i}\nCOPY --from=s{i-1} /a /b{i}\n")
PY
  secs=() rss=()
  for _ in $(seq "$runs"); do
    /usr/bin/time -f '%e %M' -o "$work/time" "$RBK" graph "$work/c$n" >/dev/null 2>"$work/err" \
      || { echo "bench: rbk graph failed on $n stages: $(tail -c 300 "$work/err")" >&2; secs+=(nan); rss+=(0); continue; }
    read -r s m <"$work/time"
    secs+=("$s") rss+=("$m")
  done
  printf '%-8s %10s %12.1f\n' "$n" "$(median "${secs[@]}")" "$(echo "$(median "${rss[@]}") / 1024" | bc -l)"
done
