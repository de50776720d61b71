#!/usr/bin/env bash
# Runs the profile parser fuzz target briefly (FUZZ_SECONDS, default 30), seeded with the
# built-in profiles. Skips (exit 0) when cargo-fuzz or the nightly toolchain is missing, so it
# can be part of every test run. See docs/profiles.md for longer runs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
seconds="${FUZZ_SECONDS:-30}"

# Outside CI a missing tool skips with the reason; under CI=true it fails.
skip() { echo "fuzz-short: $1"; [ "${CI:-}" = true ] && exit 1; exit 0; }
cargo fuzz --version >/dev/null 2>&1 || skip "cargo-fuzz not installed (cargo install cargo-fuzz --locked)"
rustup run nightly rustc --version >/dev/null 2>&1 || skip "no nightly toolchain"

corpus="$root/fuzz/corpus/profile_parse"
mkdir -p "$corpus"
cp "$root"/profiles/*.json "$corpus/"

cd "$root/fuzz"
# The fuzz crate is its own workspace with a committed lock file: a run must not rewrite it
# (the test command checks that the tree is unchanged). Out of date means a dependency of the
# hook crate changed: refresh it with `cargo +nightly update --manifest-path fuzz/Cargo.toml
# --workspace` and commit it.
if ! AYA_BUILD_SKIP=1 cargo +nightly metadata --locked --format-version 1 >/dev/null 2>"${TMPDIR:-/tmp}/fuzz-lock.$$"; then
    cat "${TMPDIR:-/tmp}/fuzz-lock.$$"; rm -f "${TMPDIR:-/tmp}/fuzz-lock.$$"
    echo "fuzz-short: fuzz/Cargo.lock is out of date (see above); update and commit it"; exit 1
fi
rm -f "${TMPDIR:-/tmp}/fuzz-lock.$$"
# CARGO_TARGET_DIR, if set, is honoured; the fuzz build has its own flags, so keep it apart.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz"
fi
# The parser needs no eBPF object: skip its build (hook/build.rs honours AYA_BUILD_SKIP).
AYA_BUILD_SKIP=1 cargo +nightly fuzz run profile_parse "$corpus" -- -max_total_time="$seconds" -max_len=8192
echo "fuzz-short: ${seconds}s without a crash"
