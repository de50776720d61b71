#!/usr/bin/env bash
# Self-test of the VM harness (tests/vm/run) on each kernel:
#   tests/vm/selftest.sh [bookworm] [sid]        (default: both; root; ~1-2 min per kernel)
#
# Per kernel it checks:
#   guest     exit 0 propagates; working directory and the passed/filtered environment; the
#             mounts (overlay /, cgroup2, bpffs, securityfs); BTF present; writes stay in the
#             guest's overlay; the writable --out share; 20000 stdout lines streamed intact;
#             and tests/vm/lsm-probe.py: a BPF-LSM program loads, attaches and really denies
#             mkdir (then detaches)
#   exit42    a non-zero status propagates exactly (and matches isa-debug-exit)
#   sigkill   a command killed by SIGKILL gives 137 (statuses > 126 come from the status file)
#   panic     a kernel panic (sysrq c) fails with 125
#   timeout   a hung command fails with 124 after --timeout
#   stuck     a guest that reports a status but does not exit: killed after 10 s, status kept
#   trouble   a WARNING in the guest's kernel log fails a passing command (123), the first
#             trouble block is printed whole, the whole console is kept and its path printed
#   cargo     as cargo's runner: a passing test crate gives 0, a test failing in the VM 101
#   signal    SIGTERM to tests/vm/run mid-boot: its qemu and virtiofsd processes and temp dir
#             are gone afterwards
# and prints boot-to-result times. Exit status: number of failed checks (0 = all passed).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN="$HERE/run"
KERNELS=("$@"); [ "${#KERNELS[@]}" -gt 0 ] || KERNELS=(bookworm sid)

WORK=$(mktemp -d /tmp/warden-vm-selftest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
TIMES="$WORK/times"
export WARDEN_VM_TIMES_FILE="$TIMES"
FAILED=0
RESULTS=()

pass() { RESULTS+=("PASS $1"); printf '[selftest] PASS %s\n' "$1"; }
bad()  { RESULTS+=("FAIL $1: $2"); printf '[selftest] FAIL %s: %s\n' "$1" "$2"; FAILED=$((FAILED + 1)); }

# Processes whose command line names a /tmp/warden-vm.* dir that no longer exists: leaks.
leaked() {
    local p d
    for p in $(pgrep -f '/tmp/warden-vm\.[A-Za-z0-9]{6}/' 2>/dev/null); do
        d=$(tr '\0' '\n' < "/proc/$p/cmdline" 2>/dev/null | grep -o '/tmp/warden-vm\.[A-Za-z0-9]\{6\}' | head -n1)
        [ -n "$d" ] && [ ! -d "$d" ] && echo "$p"
    done
}

# The guest-side checks, run by bash inside the VM.
GUEST_CHECKS='
set -u
err=0
chk() { if eval "$2"; then echo "guest ok: $1"; else echo "guest FAIL: $1" >&2; err=1; fi; }
chk "cwd kept ($EXPECT_CWD)" "[ \"\$PWD\" = \"\$EXPECT_CWD\" ]"
chk "WARDEN_* passed" "[ \"\${WARDEN_SELFTEST_TOKEN:-}\" = tok-123 ]"
chk "CARGO_*/RUST_* passed" "[ \"\${CARGO_SELFTEST:-}\" = c1 ] && [ \"\${RUST_SELFTEST:-}\" = r1 ]"
chk "other variables filtered" "[ -z \"\${SELFTEST_NOT_PASSED:-}\" ]"
chk "WARDEN_VM=1, kernel name" "[ \"\$WARDEN_VM\" = 1 ] && [ \"\$WARDEN_VM_KERNEL\" = \"\$EXPECT_KERNEL\" ]"
chk "/ is overlay" "[ \"\$(findmnt -n -o FSTYPE /)\" = overlay ]"
chk "cgroup2 at /sys/fs/cgroup" "[ \"\$(findmnt -n -o FSTYPE /sys/fs/cgroup)\" = cgroup2 ]"
chk "bpffs at /sys/fs/bpf" "[ \"\$(findmnt -n -o FSTYPE /sys/fs/bpf)\" = bpf ]"
chk "securityfs" "[ \"\$(findmnt -n -o FSTYPE /sys/kernel/security)\" = securityfs ]"
chk "bpf in the LSM list" "tr , \"\\n\" < /sys/kernel/security/lsm | grep -qx bpf"
chk "BTF /sys/kernel/btf/vmlinux" "[ -s /sys/kernel/btf/vmlinux ]"
chk "overlay / is writable" "echo x > /etc/warden-vm-selftest-$$"
chk "--out share writable" "head -c 2000000 /dev/zero > \"\$WARDEN_VM_OUT/big\" && echo done > \"\$WARDEN_VM_OUT/marker\""
chk "BPF-LSM program loads, attaches, runs" "/usr/bin/python3 \"\$EXPECT_HERE/lsm-probe.py\" >&2"
seq 1 20000
echo "stdout-end"
exit $err
'

for k in "${KERNELS[@]}"; do
    echo "[selftest] ===== kernel $k ====="
    # A kernel fetch on first use must not count towards the first case's time.
    "$HERE/../../scripts/vm-kernels.sh" "$k" || { bad "$k/fetch" "scripts/vm-kernels.sh $k failed"; continue; }

    # guest
    out="$WORK/out-$k"
    env WARDEN_SELFTEST_TOKEN=tok-123 CARGO_SELFTEST=c1 RUST_SELFTEST=r1 SELFTEST_NOT_PASSED=1 \
        "$RUN" --kernel "$k" --out "$out" -- env EXPECT_CWD="$PWD" EXPECT_KERNEL="$k" EXPECT_HERE="$HERE" \
        bash -c "$GUEST_CHECKS" > "$WORK/stdout" 2> "$WORK/stderr"
    rc=$?
    grep -h '^guest ' "$WORK/stdout" "$WORK/stderr" | sed 's/^/    /'
    grep -h '^lsm-probe' "$WORK/stderr" | sed 's/^/    /'
    if [ "$rc" != 0 ]; then bad "$k/guest" "exit $rc"; tail -n 30 "$WORK/stderr"
    elif [ "$(grep -c '^[0-9]\+$' "$WORK/stdout")" != 20000 ] || [ "$(tail -n 1 "$WORK/stdout")" != stdout-end ]; then
        bad "$k/guest" "stdout not streamed intact ($(wc -l < "$WORK/stdout") lines)"
    elif [ "$(stat -c %s "$out/big" 2>/dev/null)" != 2000000 ] || [ ! -f "$out/marker" ]; then
        bad "$k/guest" "--out share: files missing on the host"
    elif ls /etc/warden-vm-selftest-* >/dev/null 2>&1; then
        bad "$k/guest" "a guest write reached the host's /etc"
    else pass "$k/guest (exit 0, environment, mounts, LSM list, BTF, BPF-LSM load+deny, --out, stdout)"
    fi

    # exit42
    "$RUN" --kernel "$k" -- sh -c 'echo to-stderr >&2; exit 42' > /dev/null 2> "$WORK/stderr"
    rc=$?
    if [ "$rc" = 42 ] && grep -qx to-stderr "$WORK/stderr" && ! grep -q warning "$WORK/stderr"; then
        pass "$k/exit42"
    else bad "$k/exit42" "exit $rc, stderr: $(tr '\n' '|' < "$WORK/stderr")"; fi

    # sigkill
    "$RUN" --kernel "$k" -- sh -c 'kill -KILL $$' > /dev/null 2> "$WORK/stderr"
    rc=$?
    if [ "$rc" = 137 ]; then pass "$k/sigkill (137)"; else bad "$k/sigkill" "exit $rc"; fi

    # panic
    "$RUN" --kernel "$k" -- sh -c 'echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger; sleep 60' \
        > /dev/null 2> "$WORK/stderr"
    rc=$?
    if [ "$rc" = 125 ] && grep -q 'without reporting a status' "$WORK/stderr" \
       && grep -qi 'panic' "$WORK/stderr"; then
        pass "$k/panic (125)"
    else bad "$k/panic" "exit $rc"; tail -n 5 "$WORK/stderr"; fi

    # timeout
    t0=$(date +%s)
    "$RUN" --kernel "$k" --timeout 20 -- sleep 600 > /dev/null 2> "$WORK/stderr"
    rc=$?; dt=$(( $(date +%s) - t0 ))
    if [ "$rc" = 124 ] && [ "$dt" -lt 35 ] && grep -q TIMEOUT "$WORK/stderr"; then
        pass "$k/timeout (124 after ${dt} s)"
    else bad "$k/timeout" "exit $rc after $dt s"; fi

    # stuck: the guest reports a status but never exits -> killed after the grace period,
    # status kept (simulated by writing the status file early and hanging)
    "$RUN" --kernel "$k" -- sh -c 'echo 7 > /run/warden-vm/status; sleep 600' > /dev/null 2> "$WORK/stderr"
    rc=$?
    if [ "$rc" = 7 ] && grep -q 'did not exit within' "$WORK/stderr"; then pass "$k/stuck (7, VM killed after grace)"
    else bad "$k/stuck" "exit $rc"; fi

    # trouble: the command passes, but the kernel log has a WARNING block (written through
    # /dev/kmsg, as WARN() would print it): the run fails with 123, prints the block whole and
    # keeps the console in a folder it names
    logs="$WORK/vm-logs-$k"
    WARDEN_VM_LOG_DIR="$logs" "$RUN" --kernel "$k" -- sh -c 'for l in "WARNING: CPU: 0 PID: 1 at selftest.c:1 warden_selftest+0x0/0x10" "Call Trace:" "---[ end trace 0000000000000000 ]---"; do echo "<4>$l" > /dev/kmsg; done; exit 0' \
        > /dev/null 2> "$WORK/stderr"
    rc=$?
    kept=$(sed -n 's/.*whole serial console (from boot) kept in \([^,]*\).*/\1/p' "$WORK/stderr" | head -n1)
    if [ "$rc" = 123 ] && grep -q '^\[vm oops\] .*WARNING: CPU: 0 PID: 1 at selftest.c' "$WORK/stderr" \
       && grep -q '^\[vm oops\] .*end trace' "$WORK/stderr" && [ -n "$kept" ] && grep -q 'Linux version' "$kept" \
       && grep -q warden_selftest "$kept"; then
        pass "$k/trouble (123, first block printed whole, console from boot kept)"
    else bad "$k/trouble" "exit $rc, kept '${kept}'"; tail -n 20 "$WORK/stderr"; fi

    # cargo: the runner as CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER; a failing test in the
    # VM fails `cargo test` (a throwaway crate in the temp dir, no dependencies)
    if command -v cargo >/dev/null; then
        cr="$WORK/crate"
        mkdir -p "$cr/src"
        printf '[package]\nname = "warden-vm-selftest"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n' > "$cr/Cargo.toml"
        cat > "$cr/src/lib.rs" <<'RS'
#[test]
fn runs_in_the_vm_with_bpf_lsm() {
    assert_eq!(std::env::var("WARDEN_VM").as_deref(), Ok("1"));
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap();
    assert!(lsm.split(',').any(|l| l.trim() == "bpf"), "{lsm}");
}
#[test]
fn fails_on_request() {
    assert!(std::env::var("WARDEN_SELFTEST_FAIL").is_err(), "failure requested");
}
RS
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$WORK/target}"
        ( cd "$cr" && cargo build --tests -q ) 2>&1 | tail -5
        ( cd "$cr" && CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$RUN --kernel $k --" \
            cargo test -q --lib ) > "$WORK/stdout" 2> "$WORK/stderr"
        rc1=$?
        ( cd "$cr" && WARDEN_SELFTEST_FAIL=1 CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="$RUN --kernel $k --" \
            cargo test -q --lib ) > "$WORK/stdout2" 2> "$WORK/stderr2"
        rc2=$?
        if [ "$rc1" = 0 ] && grep -q '2 passed' "$WORK/stdout" && [ "$rc2" = 101 ] \
           && grep -q 'failure requested' "$WORK/stdout2"; then
            pass "$k/cargo (runner: passing tests 0, a failing test in the VM 101)"
        else bad "$k/cargo" "cargo test exit $rc1 / $rc2"; tail -n 20 "$WORK/stderr" "$WORK/stdout2"; fi
    fi

    # signal: SIGTERM to the runner mid-boot cleans up its processes and temp dir
    before=$(ls -d /tmp/warden-vm.* 2>/dev/null | sort)
    "$RUN" --kernel "$k" -- sleep 600 > /dev/null 2>&1 &
    rp=$!
    sleep 4
    mine=$(comm -13 <(echo "$before") <(ls -d /tmp/warden-vm.* 2>/dev/null | sort) | head -n1)
    kill -TERM "$rp"; wait "$rp"; rc=$?
    sleep 0.5
    if [ -z "$mine" ]; then bad "$k/signal" "no temp dir seen while running"
    elif [ -e "$mine" ]; then bad "$k/signal" "temp dir $mine left behind"
    elif pgrep -f "$mine/" >/dev/null; then bad "$k/signal" "processes left: $(pgrep -f "$mine/" | tr '\n' ' ')"
    elif [ "$rc" = 0 ]; then bad "$k/signal" "runner exited 0 after SIGTERM"
    else pass "$k/signal (exit $rc, qemu/virtiofsd gone, temp dir removed)"; fi
done

l=$(leaked)
if [ -n "$l" ]; then bad "cleanup" "leaked processes: $l"; else pass "cleanup (no leaked qemu/virtiofsd)"; fi

echo "[selftest] boot-to-result times (kernel, release, status, total s, guest boot s, command s):"
sed 's/^/    /' "$TIMES" 2>/dev/null
printf '[selftest] %s\n' "${RESULTS[@]}"
echo "[selftest] $FAILED failed"
exit "$FAILED"
