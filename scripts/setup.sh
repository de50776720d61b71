#!/usr/bin/env bash
# Idempotent setup for building and testing warden on a Debian (bookworm) machine.
# Used by both README commands (scripts/demo.sh and scripts/test.sh). A second run only checks
# and takes seconds.
#
# What it installs and why:
#   - apt packages the build and tests need (clang is not needed: the eBPF crate is Rust).
#   - rust-src for the toolchain that compiles the eBPF crate (nightly: -Z build-std=core).
#   - bpf-linker, built against the SAME toolchain's libLLVM. The LLVM major and the library
#     folder are derived from the toolchain itself (rustc -vV, rustc --print sysroot), never
#     hard-coded, so a toolchain update keeps working.
#   - bpffs mounted at /sys/fs/bpf (pinned enforcement state lives there).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

log() { printf '[setup] %s\n' "$*" >&2; }

EBPF_TOOLCHAIN="${WARDEN_EBPF_TOOLCHAIN:-nightly}"
BPF_LINKER_VERSION="0.13.0"

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "must run as root (BPF, cgroups and apt need it)"; exit 1
    fi
}

apt_packages() {
    apt_ensure protobuf-compiler pkg-config iproute2 busybox-static runc \
        containernetworking-plugins qemu-system-x86 qemu-utils cpio kmod linux-libc-dev python3 \
        curl wget openssl git sqlite3 perl \
        podman crun
    # The learn corpus's programs (with python3, busybox); podman for tests/podman.rs, and crun
    # named on its own: podman depends on `crun | runc`, and with runc in the same install apt
    # takes runc and leaves crun out (seen on a fresh machine: tests/vm/crun.sh's podman run,
    # bookworm's crun 1.8.1, then failed with "no valid executable found for OCI runtime").
}

rust_components() {
    if ! rustup toolchain list | grep -q "^${EBPF_TOOLCHAIN}"; then
        log "rustup toolchain install ${EBPF_TOOLCHAIN}"
        rustup toolchain install "${EBPF_TOOLCHAIN}" --profile minimal
    fi
    if ! rustup component list --toolchain "${EBPF_TOOLCHAIN}" --installed 2>/dev/null | grep -q '^rust-src'; then
        log "rustup component add rust-src --toolchain ${EBPF_TOOLCHAIN}"
        rustup component add rust-src --toolchain "${EBPF_TOOLCHAIN}"
    fi
    # The test command's gates: rustfmt and clippy on the default toolchain (host crates) and
    # on the eBPF toolchain (the eBPF crate is linted for its own target).
    local tc
    for tc in "$(rustup show active-toolchain | cut -d' ' -f1)" "${EBPF_TOOLCHAIN}"; do
        for c in rustfmt clippy; do
            if ! rustup component list --toolchain "$tc" --installed 2>/dev/null | grep -q "^${c}"; then
                log "rustup component add ${c} --toolchain ${tc}"
                rustup component add "$c" --toolchain "$tc"
            fi
        done
    done
}

bpf_linker() {
    local major sysroot libdir prefix feature
    major=$(rustc +"${EBPF_TOOLCHAIN}" -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    [ -n "$major" ] || { log "cannot read the LLVM version of toolchain ${EBPF_TOOLCHAIN}"; exit 1; }
    feature="llvm-${major}"
    local stamp="${CARGO_HOME:-$HOME/.cargo}/.warden-bpf-linker-${BPF_LINKER_VERSION}-${EBPF_TOOLCHAIN}-${feature}"
    if command -v bpf-linker >/dev/null 2>&1 && [ -f "$stamp" ]; then
        return 0
    fi
    sysroot=$(rustc +"${EBPF_TOOLCHAIN}" --print sysroot)
    libdir="${sysroot}/lib"
    local so
    # The real library is libLLVM.so.<ver>; libLLVM-<major>-*.so beside it is a linker script.
    so=$(ls "${libdir}"/libLLVM.so.* 2>/dev/null | head -n1 || true)
    [ -n "$so" ] || { log "no libLLVM in ${libdir}; is the ${EBPF_TOOLCHAIN} toolchain complete?"; exit 1; }
    # bpf-linker's llvm-sys wants LLVM_PREFIX/lib to hold libLLVM.so and the versioned soname.
    prefix="${WARDEN_CACHE:-/var/cache/warden-build}/llvm-${EBPF_TOOLCHAIN}-${major}"
    rm -rf "${prefix}"; mkdir -p "${prefix}/lib"
    ln -sf "$so" "${prefix}/lib/libLLVM.so"
    ln -sf "$so" "${prefix}/lib/$(basename "$so")"
    log "cargo install bpf-linker@${BPF_LINKER_VERSION} (--features ${feature}, LLVM from ${libdir})"
    env LLVM_PREFIX="$prefix" "LLVM_SYS_${major}0_PREFIX=$prefix" \
        RUSTFLAGS="-C link-arg=-Wl,-rpath,${libdir}" \
        cargo +"${EBPF_TOOLCHAIN}" install "bpf-linker@${BPF_LINKER_VERSION}" --locked --force \
        --no-default-features --features "${feature}"
    touch "$stamp"
}

cargo_fuzz() {
    # The parser fuzz target (scripts/fuzz-short.sh) runs briefly in every test run.
    if ! cargo fuzz --version >/dev/null 2>&1; then
        log "cargo install cargo-fuzz"
        cargo install cargo-fuzz --locked --quiet
    fi
}

bpffs() {
    if ! mountpoint -q /sys/fs/bpf; then
        log "mount bpffs at /sys/fs/bpf"
        mount -t bpf bpf /sys/fs/bpf
    fi
    if ! mountpoint -q /sys/kernel/security 2>/dev/null; then
        mount -t securityfs securityfs /sys/kernel/security 2>/dev/null || true
    fi
}

need_root
apt_packages
rust_components
bpf_linker
cargo_fuzz
bpffs
log "ready"
