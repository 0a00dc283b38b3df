# Shared by the bench scripts: timing, medians, result rows, a busybox base
# rootfs and a throwaway docker-registry. Source it; it defines functions
# only.

# Bash's own clock: no `date` process in what is timed (a fork and exec
# of a few milliseconds would weigh on a no-op rebuild of rbk's).
now() { echo "$EPOCHREALTIME"; }

# t CMD...: runs CMD quietly and prints its wall time in seconds; a failure
# stops the bench (its output goes to $BENCH_LOG when set).
t() {
  local t0 t1; t0=$EPOCHREALTIME
  "$@" >>"${BENCH_LOG:-/dev/null}" 2>&1 || { echo "bench: failed: $*${BENCH_LOG:+ (see $BENCH_LOG)}" >&2; exit 1; }
  t1=$EPOCHREALTIME
  echo "$t1 - $t0" | bc -l
}

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# row LABEL RBK_SECONDS PEER_SECONDS: one result line, ratio = peer / rbk.
row() { printf '%-40s %8.3f %8.3f %6.1fx\n' "$1" "$2" "$3" "$(echo "$3 / $2" | bc -l)"; }

# use_release_rbk: $RBK, unless it is set already, is this checkout's
# release build, made now.
use_release_rbk() {
  [ -z "${RBK:-}" ] || return 0
  local repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  (cd "$repo" && cargo build --release -q -p rbk)
  RBK=${CARGO_TARGET_DIR:-$repo/target}/release/rbk
}

# make_words FILE SEED [BYTES]: BYTES (default 60 MB) of lines of 12 words
# drawn from 5000 random lowercase words, all from SEED: text that
# compresses like prose (about 46% with gzip -6), the same on every machine.
make_words() {
  python3 - "$1" "$2" "${3:-60000000}" <<'PY'
import sys, random
rnd = random.Random(int(sys.argv[2]))
words = [("".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))) for _ in range(5000)]
size = int(sys.argv[3])
with open(sys.argv[1], "w") as f:
    n = 0
    while n < size:
        line = " ".join(rnd.choice(words) for _ in range(12)) + "\n"
        f.write(line); n += len(line)
PY
}

# words_context DIR BASE: a build context in DIR (made once) whose
# Dockerfile is FROM BASE and three COPY layers of 60 MB of make_words
# text (seeds 1, 2, 3).
words_context() {
  [ ! -f "$1/l3.txt" ] || return 0
  mkdir -p "$1"
  printf 'FROM %s\n' "$2" >"$1/Dockerfile"
  local i
  for i in 1 2 3; do
    make_words "$1/l$i.txt" "$i"
    printf 'COPY l%s.txt /l%s.txt\n' "$i" "$i" >>"$1/Dockerfile"
  done
}

# make_busybox_tar DIR TAR: a busybox rootfs (every applet, root and
# nobody, a sticky /tmp) in DIR, archived as TAR with numeric owners.
make_busybox_tar() {
  local r=$1
  rm -rf "$r"; mkdir -p "$r/bin" "$r/etc" "$r/tmp" "$r/root"
  cp /bin/busybox "$r/bin/"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 1777 "$r/tmp"
  tar -C "$r" --numeric-owner -cf "$2" .
}

# start_registry DIR: a fresh docker-registry on a free loopback port with
# its storage under DIR; sets $host and $regpid. stop_registry ends it.
regpid=
start_registry() {
  local dir=$1 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  host=127.0.0.1:$port
  rm -rf "$dir/registry-data"
  printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' \
    "$dir/registry-data" "$host" >"$dir/registry.yml"
  /usr/bin/docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  regpid=$!
  for _ in $(seq 100); do curl -fs "http://$host/v2/" >/dev/null && return; sleep 0.1; done
  echo "bench: the registry did not start" >&2; exit 1
}
stop_registry() { [ -z "$regpid" ] || { kill "$regpid" 2>/dev/null; wait "$regpid" 2>/dev/null || true; regpid=; }; }

# start_dockerd DIR: a private dockerd (Debian's docker.io: BuildKit is built
# in) with its socket, data root and exec root under DIR, no iptables and no
# bridge; sets $dockerpid and defines `dk` (docker against it, BuildKit on).
# stop_dockerd ends it and unmounts what it left.
dockerpid=
start_dockerd() {
  local d=$1
  mkdir -p "$d/data" "$d/exec"
  /usr/sbin/dockerd -H "unix://$d/docker.sock" --data-root "$d/data" --exec-root "$d/exec" \
    --pidfile "$d/pid" --iptables=false --ip6tables=false --bridge=none >"$d/log" 2>&1 &
  dockerpid=$!
  DOCKER_SOCK=unix://$d/docker.sock
  for _ in $(seq 150); do dk version >/dev/null 2>&1 && return; sleep 0.2; done
  echo "bench: dockerd did not start (see $d/log)" >&2; exit 1
}
dk() { DOCKER_BUILDKIT=1 /usr/bin/docker -H "$DOCKER_SOCK" "$@"; }
stop_dockerd() {
  [ -n "$dockerpid" ] || return 0
  kill "$dockerpid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$dockerpid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$dockerpid" 2>/dev/null || true
  dockerpid=
}

# peak_kb CMD...: runs CMD (output to $BENCH_LOG or nowhere) and prints
# "SECONDS PEAK_RSS_KB" (the largest single process it waited for).
peak_kb() {
  local t0 t1 out
  out=$(mktemp)
  t0=$EPOCHREALTIME
  /usr/bin/time -f %M -o "$out" "$@" >>"${BENCH_LOG:-/dev/null}" 2>&1 || { echo "bench: failed: $*" >&2; rm -f "$out"; exit 1; }
  t1=$EPOCHREALTIME
  echo "$(echo "$t1 - $t0" | bc -l) $(tail -1 "$out")"
  rm -f "$out"
}
