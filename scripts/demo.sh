#!/usr/bin/env bash
# The README's main-job command: sets everything up (idempotent), confines a demo workload to
# an embedded profile, and shows an allowed action, blocked ones, and the events reporting them.
#   sudo ./scripts/demo.sh
# Everything it creates (cgroup, pinned state in a private pin folder, processes) is removed
# at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building warden"
cargo build --locked --bins 2>&1 | grep -E '^(error|\s+Finished)' || true
[ -x target/debug/warden ] || { echo "build failed"; exit 1; }
W=$PWD/target/debug/warden
ATTEMPT=$PWD/target/debug/warden-attempt

work=$(mktemp -d /tmp/warden-demo.XXXXXX)
export WARDEN_PIN_DIR=/sys/fs/bpf/warden-demo-$$
cg=""
lpid=""
cleanup() {
    [ -n "$lpid" ] && kill "$lpid" 2>/dev/null || true
    "$W" reset >/dev/null 2>&1 || true
    [ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo; echo "== what this kernel can enforce"
"$W" probe

# The embedded default profile: any syscall of the host's table except unshare, mount and
# ptrace; connect only to 127.0.0.1:8080 over tcp; unix and inet sockets only.
python3 - "$work/demo.json" <<'PY'
import json, re, sys
names = re.findall(r'#define __NR_(\w+)', open('/usr/include/x86_64-linux-gnu/asm/unistd_64.h').read())
profile = {
    "name": "demo",
    "description": "may talk to 127.0.0.1:8080 (tcp); no unshare, mount or ptrace",
    "syscalls": {"default": "kill", "allow": [n for n in names if n not in ("unshare", "mount", "ptrace")]},
    "network": {"connect": [{"cidr": "127.0.0.1/32", "ports": [8080], "protocol": "tcp"}],
                "families": ["unix", "inet", "inet6"]},
}
json.dump(profile, open(sys.argv[1], "w"), indent=1)
PY

echo; echo "== a listener on 127.0.0.1:8080 (allowed) and one on 127.0.0.1:9090 (not allowed)"
python3 - <<'PY' &
import socket, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(64)
    while True:
        c, _ = s.accept(); c.close()
for p in (8080, 9090):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
threading.Event().wait()
PY
lpid=$!
sleep 0.5

cgroot=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
cg="$cgroot/warden-demo-$$"
mkdir "$cg"
echo; echo "== confining cgroup $cg to the demo profile"
"$W" confine --cgroup "$cg" --profile "$work/demo.json" --mode enforce

run() { # run one attempt inside the confined cgroup and say what happened
    local out rc
    set +e
    out=$(sh -c 'echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$cg" "$ATTEMPT" "$@" 2>&1)
    rc=$?
    set -e
    if [ $rc -gt 128 ]; then out="killed by signal $((rc - 128))"; fi
    printf '  %-32s -> %s\n' "$*" "$out"
}
echo; echo "== the workload tries things"
run connect 127.0.0.1 8080
run connect 127.0.0.1 9090
run udp-send 127.0.0.1 53
run raw-socket
run unshare-uts

echo; echo "== events warden reported"
"$W" events --timeout 1
echo; echo "== status"
"$W" status
echo
echo "Coming next: the same through containerd's NRI (pod annotations), file/exec rules with BPF-LSM, learn mode."
