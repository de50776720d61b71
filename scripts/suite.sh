# The suite runner behind scripts/test.sh (sourced, not run). tests/ci/selftest.sh runs it on
# deliberately failing commands, cargo tests, crashing test binaries and builds, and checks
# that the exit status and the closing line agree.
#
#   . scripts/suite.sh
#   suite_init NAME                 # NAME starts the closing line ("NAME: N passed, M failed")
#   suite_build TITLE CMD...        # a step that is not a test: counts only if it FAILS
#   suite_cargo TITLE CARGO_ARGS... # `cargo ARGS`; every test of every binary counts
#   suite_cmd TITLE CMD...          # one test: passes iff CMD exits 0
#   suite_finish                    # prints the failures and the closing line; returns 0 iff
#                                   # nothing failed and at least one test passed
#
# Why the exit status of a step is read from a file and never from PIPESTATUS: the output of a
# step goes through a filter and `tee` so that it is both streamed and kept. `cmd | tee f ||
# true` followed by `${PIPESTATUS[0]}` reads the status of `true` whenever the pipeline failed
# (that bug let failing runs pass CI). Here the step writes its own status to a file inside the
# pipeline's first element, so nothing that runs after it can overwrite it.

suite_init() {
    SUITE_NAME=${1:?suite_init NAME}
    SUITE_PASSED=0
    SUITE_FAILED=0
    SUITE_FAILURES=()
    SUITE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/warden-suite.XXXXXX")
    SUITE_STEP=0
    SUITE_TIMES=()
    SUITE_T0=$SECONDS
}

# _suite_took TITLE START: notes how long a step took (printed again by suite_finish, so a slow
# run shows where its time went).
_suite_took() {
    local t=$((SECONDS - $2))
    SUITE_TIMES+=("$(printf '%6d s  %s' "$t" "$1")")
    echo "[suite] $1: ${t} s"
}

# _suite_run LOG CMD...: runs CMD with stdout+stderr streamed (cargo's per-crate
# `warning: NAME@VER: ...` build-script chatter dropped) and appended to LOG; returns CMD's
# exit status.
_suite_run() {
    local log=$1 rcfile=$1.rc
    shift
    rm -f "$rcfile"
    # `|| r=$?` keeps an errexit shell (set -e) from leaving the group before the write.
    { local r=0; "$@" 2>&1 || r=$?; echo "$r" > "$rcfile"; } </dev/null | sed -u '/^warning: [a-z0-9_-]*@[0-9]/d' | tee -a "$log" || :
    if [ ! -s "$rcfile" ]; then
        echo "[suite] no exit status recorded for: $*"
        return 1
    fi
    return "$(cat "$rcfile")"
}

# Sets SUITE_LOG to a new step's own log. Not `log=$(_suite_next_log)`: a command
# substitution runs in a subshell, the counter never moved, and every step appended to one log
# (a cargo step then counted the earlier steps' results as its own).
_suite_next_log() {
    SUITE_STEP=$((SUITE_STEP + 1))
    printf -v SUITE_LOG '%s/step-%03d.log' "$SUITE_DIR" "$SUITE_STEP"
}

_suite_fail() { # TITLE WHY
    SUITE_FAILURES+=("$1: $2")
}

suite_build() {
    local title=$1 log rc=0 t0=$SECONDS
    shift
    _suite_next_log
    log=$SUITE_LOG
    echo "== $title"
    _suite_run "$log" "$@" || rc=$?
    if [ "$rc" != 0 ]; then
        SUITE_FAILED=$((SUITE_FAILED + 1))
        _suite_fail "$title" "exit $rc"
        echo "$title: FAILED (exit $rc)"
    fi
    _suite_took "$title" "$t0"
    return 0
}

suite_cmd() {
    local title=$1 log rc=0 t0=$SECONDS
    shift
    _suite_next_log
    log=$SUITE_LOG
    echo "== $title"
    _suite_run "$log" "$@" || rc=$?
    if [ "$rc" = 0 ]; then
        SUITE_PASSED=$((SUITE_PASSED + 1))
        echo "$title: passed"
    else
        SUITE_FAILED=$((SUITE_FAILED + 1))
        _suite_fail "$title" "exit $rc"
        echo "$title: FAILED (exit $rc)"
    fi
    _suite_took "$title" "$t0"
    return 0
}

# Counts from cargo's output: every `test result:` line adds its passed and failed counts. A
# test binary that dies without its result line (abort, SIGSEGV, SIGKILL, a panic outside a
# test) is seen only as cargo's `error: test failed, to rerun pass ...`: each such binary
# without a FAILED result line counts as one failed test. A non-zero cargo exit with nothing
# counted as failed (a build error, a bad flag) counts as one failed test too, so the closing
# line can never say "0 failed" for a failed step.
suite_cargo() {
    local title=$1 log rc=0 p f bin_failed res_failed t0=$SECONDS
    shift
    _suite_next_log
    log=$SUITE_LOG
    echo "== $title"
    _suite_run "$log" cargo "$@" || rc=$?
    read -r p f res_failed bin_failed < <(awk '
        /^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i+1) ~ /^passed;/) p += $i
                if ($(i+1) ~ /^failed;/) f += $i
            }
            if ($3 ~ /^FAILED/) rf++
        }
        /^error: test failed, to rerun pass/ { bf++ }
        END { print p+0, f+0, rf+0, bf+0 }' "$log")
    if [ "$bin_failed" -gt "$res_failed" ]; then
        f=$((f + bin_failed - res_failed))
        _suite_fail "$title" "$((bin_failed - res_failed)) test binary(ies) died without a result line"
    fi
    if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
        f=1
        _suite_fail "$title" "cargo exit $rc with no failed test counted (build or harness error)"
    elif [ "$rc" = 0 ] && [ "$f" != 0 ]; then
        # cargo said success while a result line said failed: trust the failure.
        _suite_fail "$title" "cargo exit 0 but $f failed tests counted"
    fi
    if [ "$f" != 0 ]; then
        grep -E '^test .* \.\.\. FAILED$' "$log" | sed "s|^|[$title] |" || :
        _suite_fail "$title" "$f failed (cargo exit $rc)"
    fi
    SUITE_PASSED=$((SUITE_PASSED + p))
    SUITE_FAILED=$((SUITE_FAILED + f))
    echo "$title: $p passed, $f failed (cargo exit $rc)"
    _suite_took "$title" "$t0"
    return 0
}

suite_finish() {
    local status=0
    if [ "$SUITE_PASSED" = 0 ]; then
        echo "[suite] no test ran"
        _suite_fail "suite" "no test ran"
        [ "$SUITE_FAILED" != 0 ] || SUITE_FAILED=1
    fi
    if [ "${#SUITE_FAILURES[@]}" -gt 0 ]; then
        echo "[suite] failures:"
        printf '[suite]   %s\n' "${SUITE_FAILURES[@]}"
    fi
    [ "$SUITE_FAILED" = 0 ] || status=1
    if [ "${#SUITE_TIMES[@]}" -gt 0 ]; then
        echo "[suite] time per step (${SUITE_SETUP_SECONDS:+setup before the steps ${SUITE_SETUP_SECONDS} s, }steps $((SECONDS - SUITE_T0)) s):"
        printf '[suite] %s\n' "${SUITE_TIMES[@]}"
    fi
    rm -rf "$SUITE_DIR"
    echo "$SUITE_NAME: $SUITE_PASSED passed, $SUITE_FAILED failed"
    return $status
}
