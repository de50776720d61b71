#!/usr/bin/env bash
# The containerd suite's core under crun (issue 20, item 3), in a VM.
#
# crun refuses this host's hybrid cgroups, and a mount namespace showing it the cgroup2 mount
# alone does not help: containerd's CRI gives every sandbox cpu shares and the host's cpu
# controller belongs to cgroup v1 (tests/integration/src/containerd.rs, runtime_unusable_here).
# So the tests run inside a VM booted from a Debian kernel with pure cgroup2 (tests/vm/run):
# containerd 1.7 + NRI + trixie's crun 1.21 (scripts/containerd.sh) + warden, each binary
# below whole, in two boots at once (below).
#   warden_nri        confinement before the first instruction, the built-in profiles, restarts
#                     and Synchronize, learn, refusals, cleanup (crun's own cgroup handling)
#   never_unconfined  the createRuntime backstop hook, which crun runs and reports differently
#                     (state "created", hook output discarded)
#   seccomp_export    an exported profile applied by crun's own seccomp (libseccomp, not runc's)
#   podman            the packaged hooks.d JSON under podman 4.3 with bookworm's crun 1.8.1,
#                     podman's default runtime on Debian
# Usage: tests/vm/crun.sh   (root; WARDEN_CRUN_KERNEL=bookworm|sid, default bookworm)
set -euo pipefail
cd "$(dirname "$0")/../.."

TESTS=(warden_nri never_unconfined seccomp_export podman)
KERNEL="${WARDEN_CRUN_KERNEL:-bookworm}"

args=()
for t in "${TESTS[@]}"; do args+=(--test "$t"); done
# The test executables as cargo built them (names carry a hash).
bins=$(cargo test --locked -p warden-integration-tests "${args[@]}" --no-run --message-format=json \
    | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])')
n=$(echo "$bins" | grep -c . || true)
if [ "$n" != "${#TESTS[@]}" ]; then
    echo "crun.sh: expected ${#TESTS[@]} test executables, cargo reported $n:" >&2
    echo "$bins" >&2
    exit 1
fi

# Two VM boots at once (each VM is single-threaded TCG on one host core; this machine has two),
# balanced by their measured durations (2026-12-05, bookworm): warden_nri ~460 s in one;
# never_unconfined ~400 s, seccomp_export and podman ~60 s in the other. Every binary runs even
# when one fails; each boot's status says whether any of its binaries failed, and this script
# fails if either boot did. TMPDIR=/run: the VM's /tmp is an overlay, where containerd's
# overlayfs snapshots cannot live.
script='rc=0
for b in "$@"; do
    echo "== crun: $(basename "$b")"
    "$b" || rc=1
done
exit $rc'
lane_a=() lane_b=()
for b in $bins; do
    case "$(basename "$b")" in
        warden_nri-*) lane_a+=("$b") ;;
        *) lane_b+=("$b") ;;
    esac
done
if [ "${#lane_a[@]}" != 1 ] || [ "${#lane_b[@]}" != 3 ]; then
    echo "crun.sh: cannot split the executables into the two boots: ${bins//$'\n'/ }" >&2
    exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/warden-crun.XXXXXX")
declare -A runner=()
cleanup() {
    # Only the runners this script started, by pid (each stops its own VM when terminated).
    for p in "${runner[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
# boot LABEL BIN...: one VM boot in the background; its output is relayed live, prefixed.
boot() {
    local label=$1
    shift
    tests/vm/run --kernel "$KERNEL" --timeout "${WARDEN_CRUN_TIMEOUT:-1500}" -- \
        env TMPDIR=/run WARDEN_TEST_OCI_RUNTIME=crun sh -c "$script" crun "$@" > "$work/$label.out" 2>&1 &
    runner[$label]=$!
    tail -n +1 -F --pid="$!" "$work/$label.out" 2>/dev/null | sed -u "s/^/[crun $label] /" &
}
boot a "${lane_a[@]}"
boot b "${lane_b[@]}"
# Each runner's own exit status, from `wait PID` (bash keeps it for a finished child).
failed=0
for label in a b; do
    rc=0
    wait "${runner[$label]}" || rc=$?
    unset "runner[$label]"
    echo "[crun.sh] boot $label: exit $rc"
    [ "$rc" = 0 ] || failed=1
done
wait   # the relays end with their runners
exit "$failed"
