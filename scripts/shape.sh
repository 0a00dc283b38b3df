#!/usr/bin/env bash
# The shape issue 28 set for the code, checked on every test run:
# no import circle between sibling modules of any crate
# (scripts/modcycles.py), and no source file over 800 lines outside the
# tests. (Functions over 80 lines: `cargo clippy` with
# CLIPPY_CONF_DIR holding too-many-lines-threshold = 80.)
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
python3 scripts/modcycles.py || status=1
long=$(find compiler/src store/src runtime/src attest/src scheduler/src cli/src -name '*.rs' \
  -exec awk 'END { if (NR > 800) print NR, FILENAME }' {} \;)
if [ -n "$long" ]; then
  echo "source files over 800 lines:"
  echo "$long"
  status=1
else
  echo "no source file over 800 lines"
fi
exit "$status"
