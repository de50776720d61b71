#!/usr/bin/env bash
# The README's test command: sets everything up (idempotent) and runs the whole test suite.
#   sudo ./scripts/test.sh
# Kernel tests need root. With CI=true a test that cannot run its kernel part FAILS.
# Every step goes through the suite runner (scripts/suite.sh, self-tested by
# tests/ci/selftest.sh as the first step): the exit status is non-zero whenever anything
# failed, and the closing line `warden: N passed, M failed` always agrees with it.
set -euo pipefail
cd "$(dirname "$0")/.."

setup_t0=$SECONDS
bash scripts/setup.sh
bash scripts/containerd.sh   # private containerd 1.7 with NRI, runc, local images
bash scripts/vm-kernels.sh   # Debian kernels (bookworm 6.1, sid 7.x) and qemu for the VM tests
export SUITE_SETUP_SECONDS=$((SECONDS - setup_t0))
echo "[setup] ${SUITE_SETUP_SECONDS} s"

. scripts/suite.sh
suite_init warden
export CARGO_TERM_COLOR=never
EBPF_TOOLCHAIN="${WARDEN_EBPF_TOOLCHAIN:-nightly}"
tree_before=$(git status --porcelain 2>/dev/null || true)

suite_cmd "suite runner self-test (failing command, test, crash, build are caught)" bash tests/ci/selftest.sh
suite_cmd "cargo fmt --check (workspace, eBPF crate included)" cargo fmt --all --check
suite_cmd "cargo clippy -D warnings (host crates, all targets)" \
    cargo clippy --locked --workspace --exclude warden-ebpf --all-targets -- -D warnings
# The eBPF crate is linted for its own target, as aya-build compiles it (core built from
# source, the cfg aya-ebpf expects).
suite_cmd "cargo clippy -D warnings (eBPF crate, bpfel-unknown-none)" \
    env -C enforcer-ebpf CARGO_ENCODED_RUSTFLAGS='--cfg=bpf_target_arch="x86_64"' \
    cargo +"$EBPF_TOOLCHAIN" clippy --locked -p warden-ebpf --release --target bpfel-unknown-none \
    -Z build-std=core -- -D warnings

suite_build "build (warden, eBPF object, test helpers)" cargo build --locked --bins
# The helper run inside containers must be static (busybox image, no libc): built with an
# explicit --target so its output dir does not fight the host build's fingerprints.
suite_build "build (static warden-attempt)" cargo rustc --locked -p warden-attempt --release \
    --target "$(rustc -vV | sed -n 's/^host: //p')" --bin warden-attempt -- -C target-feature=+crt-static

# --no-fail-fast: a failing binary must not hide the results of the ones after it.
suite_cargo "unit tests and kernel tests (real cgroups, real eBPF, containerd, VMs)" \
    test --locked --no-fail-fast --lib --bins --tests

# The containerd suite again under containerd 2.x (Debian sid's, fetched by
# scripts/containerd.sh): config version 3 with the shipped NRI snippet, its NRI version.
export WARDEN_TEST_CONTAINERD=2
suite_cargo "containerd 2.x: the containerd suite again (NRI, backstop, restarts, learn, deny lists, seccomp export)" \
    test --locked --no-fail-fast -p warden-integration-tests --test warden_nri --test never_unconfined \
    --test operator_policy --test deny_lists --test seccomp_export --test ops --test control_nri --test churn \
    --test containerd_cleanup --test nri_containerd
unset WARDEN_TEST_CONTAINERD

# The VM harness proves that a failure, panic or hang inside a VM fails the suite, on each
# kernel, and that BPF-LSM programs really run there.
suite_cmd "VM harness self-test (bookworm 6.1, sid 7.x)" bash tests/vm/selftest.sh bookworm sid
# crun (trixie's 1.21 under containerd 1.7, bookworm's 1.8.1 under Podman) refuses this host's
# hybrid cgroups: the containerd suite's core and the Podman test run under it in two VM boots at once.
suite_cmd "crun: warden_nri, never_unconfined, seccomp_export, podman in a VM (pure cgroup2)" \
    bash tests/vm/crun.sh
# Builds the deb and rpm (release), installs them into a bookworm chroot and an rpm root.
suite_cmd "packages (deb in a bookworm chroot, rpm root, systemd unit)" bash tests/packaging/test.sh
suite_cmd "fuzz (profile parser, short run)" env FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash scripts/fuzz-short.sh

# A test run must leave the checkout as it found it (no rewritten lock files, no fixtures).
tree_clean() {
    local now
    now=$(git status --porcelain)
    [ "$now" = "$tree_before" ] && return 0
    echo "the test run changed the git tree:"
    diff <(echo "$tree_before") <(echo "$now") || true
    return 1
}
suite_cmd "git tree unchanged by the run" tree_clean

suite_finish
