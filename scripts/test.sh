#!/usr/bin/env bash
# Runs rbk's whole test suite on a fresh Debian machine, as root:
# installs the packages the tests use, then `cargo test` for the workspace,
# then (as root) the differential suite against BuildKit
# (tests/differential/run.sh, docs/differential.md).
# Tests that need root, overlayfs or namespaces run here (they print
# SKIPPED loudly where those are missing).
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(busybox-static git rpm gcc libc6-dev uidmap slirp4netns skopeo umoci buildah runc docker-registry apache2-utils openssl debootstrap curl bc tar gzip zstd python3 python3-venv python3-pip docker.io openssh-client chromium qemu-user-static)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "!! missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

# The validators of `rbk plan --format github|gitlab|k8s` output
# (cli/tests/it/plan_emit.rs): the GitHub and GitLab schemas vendored in
# check-jsonschema, the Kubernetes API models of the official client.
venv=/opt/rbk-test-venv
if [ "$(id -u)" = 0 ] && ! "$venv/bin/python3" -c 'import kubernetes, check_jsonschema, spdx_tools, in_toto_attestation' 2>/dev/null; then
  echo "== installing check-jsonschema, kubernetes, spdx-tools and in-toto-attestation into $venv"
  python3 -m venv "$venv"
  # kubernetes 31+: its models know appArmorProfile and backoffLimitPerIndex.
  # spdx-tools validates `rbk sbom`'s SPDX documents (cli/tests/it/sbom.rs).
  "$venv/bin/pip" install -q 'check-jsonschema>=0.28' 'kubernetes>=31' spdx-tools in-toto-attestation
fi

# An arm64 busybox for the emulated-platform test (QEMU through binfmt_misc).
cache="${RBK_TEST_CACHE:-${CARGO_TARGET_DIR:-target}/rbk-test-cache}"
if [ "$(id -u)" = 0 ] && ! ls "$cache"/busybox-static_*_arm64.deb >/dev/null 2>&1; then
  mkdir -p "$cache"
  if ! { dpkg --add-architecture arm64 && apt-get update -qq &&
         (cd "$cache" && apt-get download -qq busybox-static:arm64 2>/dev/null); }; then
    echo "!! could not fetch busybox-static:arm64: the emulated-platform test will say SKIPPED" >&2
  fi
fi

# What this host gives rbk. As root (CI), the tests that need namespaces,
# overlayfs, seccomp, the default network and rootless tools must run, not
# skip: stop here, naming the package, when one of them is missing.
cargo build -q -p rbk
if [ "$(id -u)" = 0 ]; then
  "${CARGO_TARGET_DIR:-target}/debug/rbk" --root "$(mktemp -d)" system info \
    --require namespaces,seccomp,overlayfs,slirp4netns,tun,newuidmap,qemu
else
  "${CARGO_TARGET_DIR:-target}/debug/rbk" system info || true
fi

# Two cores: one test binary at a time, tests inside it in parallel.
status=0
echo "== the code's shape (import circles, file sizes)"
./scripts/shape.sh || status=1
cargo test --workspace --no-fail-fast -- --test-threads=4 || status=$?

if [ "$(id -u)" = 0 ]; then
  echo "== differential suite: rbk against BuildKit"
  tests/differential/run.sh || status=1
else
  echo "!! SKIPPED the differential suite against BuildKit: it needs root" >&2
fi
exit "$status"
