#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent) and runs the whole test suite.
#   sudo ./scripts/test.sh
# Kernel tests need root. With CI=true a test that cannot run its kernel part FAILS.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
bash scripts/containerd.sh   # private containerd 1.7 with NRI, runc, local images
bash scripts/vm-kernels.sh   # Debian kernels (bookworm 6.1, sid 7.x) and qemu for the VM tests

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
# --no-fail-fast: a failing binary must not hide the results of the ones after it.
cargo test --locked --no-fail-fast --lib --bins --tests 2>&1 | grep -v '^warning: warden@' | tee -a "$log" || true
[ "${PIPESTATUS[0]}" = 0 ] || status=1

# Suites outside cargo test count as one test each in the closing line.
extra_pass=0; extra_fail=0
suite() { # name command...
    local name=$1; shift
    echo "== $name"
    if "$@"; then extra_pass=$((extra_pass + 1)); echo "$name: passed"
    else extra_fail=$((extra_fail + 1)); status=1; echo "$name: FAILED"; fi
}
# The VM harness proves that a failure, panic or hang inside a VM fails the suite, on each
# kernel, and that BPF-LSM programs really run there.
suite "VM harness self-test (bookworm 6.1, sid 7.x)" bash tests/vm/selftest.sh bookworm sid
# Builds the deb and rpm (release), installs them into a bookworm chroot and an rpm root.
suite "packages (deb in a bookworm chroot, rpm root, systemd unit)" bash tests/packaging/test.sh
suite "fuzz (profile parser, short run)" env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz-short.sh

# One closing line over every test binary (cargo prints one `test result:` per binary).
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } } END { print p+0, f+0 }' "$log")
passed=$((passed + extra_pass)); failed=$((failed + extra_fail))
[ "${passed:-0}" -gt 0 ] || { echo "no test ran"; status=1; }
[ "$status" = 0 ] || [ "${failed:-0}" -gt 0 ] || failed=1
echo "warden: ${passed:-0} passed, ${failed:-0} failed"
exit $status
