#!/usr/bin/env bash
# The containerd suite's core under crun (issue 20, item 3), in a VM.
#
# crun refuses this host's hybrid cgroups, and a mount namespace showing it the cgroup2 mount
# alone does not help: containerd's CRI gives every sandbox cpu shares and the host's cpu
# controller belongs to cgroup v1 (tests/integration/src/containerd.rs, runtime_unusable_here).
# So the tests run inside a VM booted from a Debian kernel with pure cgroup2 (tests/vm/run):
# containerd 1.7 + NRI + trixie's crun 1.21 (scripts/containerd.sh) + warden, each binary
# below whole, in one boot.
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

# Every binary runs even when one fails; the status says whether any did. TMPDIR=/run: the
# VM's /tmp is an overlay, where containerd's overlayfs snapshots cannot live.
script='rc=0
for b in "$@"; do
    echo "== crun: $(basename "$b")"
    "$b" || rc=1
done
exit $rc'
# shellcheck disable=SC2086
exec tests/vm/run --kernel "$KERNEL" --timeout "${WARDEN_CRUN_TIMEOUT:-1500}" -- \
    env TMPDIR=/run WARDEN_TEST_OCI_RUNTIME=crun sh -c "$script" crun $bins
