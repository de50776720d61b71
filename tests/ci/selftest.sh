#!/usr/bin/env bash
# Self-test of the suite runner (scripts/suite.sh), run by scripts/test.sh in every CI run:
#   bash tests/ci/selftest.sh
# Each case runs the runner in a child shell with errexit and pipefail on (as scripts/test.sh
# does) on something that passes or deliberately fails, and checks the child's exit status
# AND its closing line. A runner that lets a failure through (for instance by reading
# PIPESTATUS after `|| true`) fails here, and so fails CI.
# Also: a lint that no shell script of the repository reads PIPESTATUS after `|| true`/`|| :`
# (shown to catch that pattern on a sample), and that scripts/test.sh goes through the runner.
# Exit status: the number of failed checks.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
FIXTURE="$HERE/fixture/Cargo.toml"
export CARGO_TARGET_DIR="$REPO/target/ci-fixture"
WORK=$(mktemp -d /tmp/warden-ci-selftest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
FAILED=0
pass() { printf '[ci-selftest] PASS %s\n' "$1"; }
bad() { printf '[ci-selftest] FAIL %s: %s\n' "$1" "$2"; FAILED=$((FAILED + 1)); }

# case NAME WANT_EXIT(zero|nonzero) WANT_LINE BODY: BODY runs between suite_init and
# suite_finish in a child bash with `set -euo pipefail`.
case_() {
    local name=$1 want=$2 line=$3 body=$4 rc=0
    bash -c "set -euo pipefail; . '$REPO/scripts/suite.sh'; suite_init self; $body
             suite_finish" > "$WORK/$name.out" 2>&1 || rc=$?
    local got_line
    got_line=$(grep -E '^self: [0-9]+ passed, [0-9]+ failed$' "$WORK/$name.out" | tail -n 1)
    if { [ "$want" = zero ] && [ "$rc" != 0 ]; } || { [ "$want" = nonzero ] && [ "$rc" = 0 ]; }; then
        bad "$name" "exit $rc, wanted $want; output:"; sed 's/^/    /' "$WORK/$name.out" | tail -n 30
    elif [ "$got_line" != "$line" ]; then
        bad "$name" "closing line '$got_line', wanted '$line'"; sed 's/^/    /' "$WORK/$name.out" | tail -n 30
    else
        pass "$name (exit $rc, '$got_line')"
    fi
}

# Build the fixture once so that the cases below measure the runner, not the compiler.
cargo test --locked -q --manifest-path "$FIXTURE" --no-run > "$WORK/build.out" 2>&1 \
    || { bad "fixture build" "$(tail -n 5 "$WORK/build.out")"; }

case_ cmd-pass        zero    'self: 1 passed, 0 failed' 'suite_cmd ok true'
case_ cmd-fail        nonzero 'self: 1 passed, 1 failed' 'suite_cmd ok true; suite_cmd bad false'
case_ cmd-fail-piped  nonzero 'self: 0 passed, 1 failed' 'suite_cmd bad sh -c "echo out; echo err >&2; exit 3"'
case_ build-fail      nonzero 'self: 1 passed, 1 failed' 'suite_build compile false; suite_cmd ok true'
case_ nothing-ran     nonzero 'self: 0 passed, 1 failed' ':'
case_ cargo-pass      zero    'self: 3 passed, 0 failed' \
    "suite_cargo fixture test --locked --manifest-path '$FIXTURE'"
case_ cargo-test-fail nonzero 'self: 2 passed, 1 failed' \
    "WARDEN_CI_FIXTURE_FAIL=1 suite_cargo fixture test --locked --manifest-path '$FIXTURE'"
case_ cargo-abort     nonzero 'self: 0 passed, 1 failed' \
    "WARDEN_CI_FIXTURE_ABORT=1 suite_cargo fixture test --locked --manifest-path '$FIXTURE'"
case_ cargo-no-build  nonzero 'self: 0 passed, 1 failed' \
    "suite_cargo fixture test --locked --manifest-path '$FIXTURE' --features broken"
case_ cargo-fail-then-pass nonzero 'self: 3 passed, 1 failed' \
    "WARDEN_CI_FIXTURE_FAIL=1 suite_cargo fixture test --locked --manifest-path '$FIXTURE'
     suite_cmd later true"
# Each cargo step counts its own output only: a second step once read the first's log too
# (the step counter was bumped in a subshell), so a failure was counted twice, a passing step
# was reported failed, and the closing line's passed count was inflated.
case_ cargo-fail-then-cargo-pass nonzero 'self: 5 passed, 1 failed' \
    "WARDEN_CI_FIXTURE_FAIL=1 suite_cargo first test --locked --manifest-path '$FIXTURE'
     suite_cargo second test --locked --manifest-path '$FIXTURE'"
if grep -qx 'second: 3 passed, 0 failed (cargo exit 0)' "$WORK/cargo-fail-then-cargo-pass.out"; then
    pass "the second cargo step reports its own counts"
else
    bad "cargo-fail-then-cargo-pass" "the second step's line: $(grep '^second:' "$WORK/cargo-fail-then-cargo-pass.out")"
fi

# Lint: a line reading PIPESTATUS right after a line (or on the same line) ending in
# `|| true` / `|| :` reads the status of `true`, not of the pipeline.
lint() { # files...
    awk '
        FNR == 1 { prev = "" }
        /PIPESTATUS/ && (prev ~ /\|\|[ \t]*(true|:)[ \t]*$/ || $0 ~ /\|\|[ \t]*(true|:)[ \t]*;.*PIPESTATUS/) {
            print FILENAME ":" FNR ": " $0; bad = 1
        }
        NF { prev = $0 }
        END { exit bad }' "$@"
}
printf '%s\n' 'cargo test 2>&1 | tee -a log || true' '[ "${PIPESTATUS[0]}" = 0 ] || status=1' > "$WORK/sample.sh"
if lint "$WORK/sample.sh" > /dev/null; then bad "lint" "did not catch the pattern in a sample"
else pass "lint catches PIPESTATUS after '|| true' (sample)"; fi
mapfile -t scripts < <(cd "$REPO" && git ls-files | while read -r f; do
    case "$f" in *.sh) echo "$REPO/$f";; *) head -c 64 "$REPO/$f" 2>/dev/null | grep -q '^#!.*\(ba\|\)sh' && echo "$REPO/$f";; esac
done)
if out=$(lint "${scripts[@]}"); then pass "lint: no PIPESTATUS after '|| true' in ${#scripts[@]} shell scripts"
else bad "lint" "$out"; fi
if grep -q 'scripts/suite.sh' "$REPO/scripts/test.sh" && ! grep -q PIPESTATUS "$REPO/scripts/test.sh"; then
    pass "scripts/test.sh runs its steps through scripts/suite.sh"
else bad "test.sh" "does not use scripts/suite.sh, or reads PIPESTATUS itself"; fi

echo "[ci-selftest] $FAILED failed"
exit "$FAILED"
