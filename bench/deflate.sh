#!/usr/bin/env bash
# The per-chunk deflate of rbk's parallel gzip, candidates side by side on
# a real 1 MiB text chunk (C headers), a binary one (executables) and
# 1 MiB of the random words bench/push-pull.sh's text image is made of, at
# level 6: flate2 on zlib-rs (rbk's), flate2 on zlib-ng (C; needs cmake),
# miniz_oxide and libdeflate. Medians of 21 rounds, one thread.
#
#   bench/deflate.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
work=${BENCH_DIR:-/var/tmp/rbk-bench}/deflate
mkdir -p "$work"
# (tar stops on the pipe head closes: not an error here)
(tar -cf - -C /usr/include . 2>/dev/null || true) | head -c 8000000 | tail -c 1048576 >"$work/text.bin"
(tar -cf - -C /usr/bin . 2>/dev/null || true) | head -c 20000000 | tail -c 1048576 >"$work/binary.bin"
make_words "$work/words.txt" 1 1100000
head -c 1048576 "$work/words.txt" >"$work/words.bin"
export CARGO_TARGET_DIR=$work/target
cargo build -q --release --manifest-path "$here/deflate/Cargo.toml"
cp "$CARGO_TARGET_DIR/release/deflate-bench" "$work/rs"
if command -v cmake >/dev/null; then
  cargo build -q --release --manifest-path "$here/deflate/Cargo.toml" --no-default-features --features ng
  cp "$CARGO_TARGET_DIR/release/deflate-bench" "$work/ng"
fi
for bin in "$work/rs" "$work/ng"; do
  if [ -x "$bin" ]; then "$bin" "$work/text.bin" "$work/binary.bin" "$work/words.bin"; fi
done
