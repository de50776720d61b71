#!/usr/bin/env bash
# warden's benchmark, one command: builds release binaries and prints one markdown report
# (machine, kernel, every comparison measured alternating in one run, medians) on stdout;
# progress goes to stderr.
#
#   sudo ./scripts/bench.sh            # everything (~20-25 min on a 2-core VM; the VM syscall part ~8 min)
#   sudo ./scripts/bench.sh --quick    # few iterations: checks every part produces a figure
#   options: --no-containers  --no-vm  (skip those parts)
#
# Parts: syscalls, network, deny lists, scale, profile validation at the size limits (warden-bench,
# native); container start and event flood (warden-bench-containers: private containerd +
# `warden run`); file rules (warden-bench --part files inside the VM harness, tests/vm/run, on
# Debian's 6.1 and 7.x kernels, since BPF-LSM needs BPF trampolines this host's kernel may
# refuse); the syscall part again in those VMs, where the per-function fentry configurations of
# issue 19 item 3 can run.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0; containers=1; vm=1
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        --no-containers) containers=0 ;;
        --no-vm) vm=0 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown option $a" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "scripts/bench.sh needs root (eBPF, cgroups, containerd, VMs)" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-$PWD/target}
host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TERM_COLOR=never

echo "== build (release)" >&2
cargo build --locked --release -p warden -p warden-bench -p warden-integration-tests --bin warden --bin warden-bench \
    --bin warden-bench-containers 2>&1 | grep -v '^warning: warden@' >&2 || true
for b in warden warden-bench warden-bench-containers; do
    [ -x "$target/release/$b" ] || { echo "build of $b failed" >&2; exit 1; }
done
if [ "$containers" = 1 ]; then
    # The flood container runs the static helper (busybox image, no libc).
    cargo rustc --locked -p warden-attempt --release --target "$host" --bin warden-attempt \
        -- -C target-feature=+crt-static 2>&1 | grep -E '^(error|warning: unused)' >&2 || true
    bash scripts/containerd.sh >&2
fi
[ "$vm" = 0 ] || bash scripts/vm-kernels.sh >&2

if [ "$quick" = 1 ]; then
    native=(--reps 1 --iters 20000 --net-iters 500 --cgroups 20)
    ctr=(--pods 3 --flood 20000)
    files=(--reps 1 --file-iters 300)
    vsys=(--reps 1 --iters 20000)
else
    native=(--reps 7 --iters 300000 --net-iters 20000 --cgroups 1000)
    ctr=(--pods 50 --flood 1000000)
    files=(--reps 5 --file-iters 5000)
    # Under TCG a syscall costs ~0.4-1 us; 6.1 spends most of this part detaching trampolines.
    vsys=(--reps 5 --iters 100000)
fi

echo "# warden benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
echo
"$target/release/warden-bench" --part syscalls,net,deny,scale,profile "${native[@]}"
if [ "$containers" = 1 ]; then
    "$target/release/warden-bench-containers" "${ctr[@]}"
fi
if [ "$vm" = 1 ]; then
    for k in bookworm sid; do
        echo "== VM $k: file rules" >&2
        # Inside the VM: the host's / is shared read-only, so the same binary runs there.
        tests/vm/run --kernel "$k" --timeout 900 -- "$target/release/warden-bench" --part files "${files[@]}"
        # The syscall layer's per-function (fentry) configurations need BPF trampolines too.
        echo "== VM $k: syscall layer, sys_enter against per-function fentry" >&2
        tests/vm/run --kernel "$k" --timeout 1500 -- "$target/release/warden-bench" --part syscalls "${vsys[@]}"
    done
fi
