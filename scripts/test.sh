#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent) and runs the whole test suite.
#   sudo ./scripts/test.sh
# Kernel tests need root. With CI=true a test that cannot run its kernel part FAILS.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

log=$(mktemp /tmp/warden-test.XXXXXX.log)
trap 'rm -f "$log"' EXIT
export CARGO_TERM_COLOR=never

echo "== build (warden, eBPF object, test helpers)"
cargo build --locked --bins 2>&1 | grep -v '^warning: warden@' || true
[ "${PIPESTATUS[0]}" = 0 ] || { echo "build failed"; exit 1; }

# The helper run inside containers must be static (busybox image, no libc): built with an
# explicit --target so its output dir does not fight the host build's fingerprints.
cargo rustc --locked -p warden-attempt --release --target "$(rustc -vV | sed -n 's/^host: //p')" \
    --bin warden-attempt -- -C target-feature=+crt-static 2>&1 | grep -E '^(error|warning: unused)' || true

status=0
echo "== unit tests and kernel tests (real cgroups, real eBPF)"
cargo test --locked --lib --bins --tests 2>&1 | grep -v '^warning: warden@' | tee -a "$log" || true
[ "${PIPESTATUS[0]}" = 0 ] || status=1

# One closing line over every test binary (cargo prints one `test result:` per binary).
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } } END { print p+0, f+0 }' "$log")
[ "${passed:-0}" -gt 0 ] || { echo "no test ran"; status=1; }
[ "$status" = 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "warden: ${passed:-0} passed, ${failed:-0} failed"
exit $status
