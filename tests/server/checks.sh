# checks.sh - sourced by the shell tests of roost's commands: the checks
# they share. Each prints "ok: WHAT" or "FAIL: WHAT ..." and a failure sets
# fail=1, which the test exits with at the end. The sourcing test sets
# out, the file check writes a command's output to and expect_text reads
# by default. None of these calls bad, which a test may define its own
# way (test_serve.sh does).
ok() { echo "ok: $1"; }
bad() { echo "FAIL: $1"; fail=1; }
# check STATUS WHAT COMMAND...: COMMAND exits with STATUS; its output
# (stdout and stderr) is left in $out and shown on a failure.
check() {
    want=$1; what=$2; shift 2
    "$@" >"$out" 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, want $want"; cat "$out"; fail=1
    else
        echo "ok: $what"
    fi
}
# expect_text WHAT PATTERN [FILE]: FILE (default $out) has a line matching
# the grep PATTERN.
expect_text() {
    if grep -q -- "$2" "${3:-$out}"; then echo "ok: $1"; else
        echo "FAIL: $1: no '$2' in:"; cat "${3:-$out}"; fail=1; fi
}
# wait_for FILE PATTERN: wait up to 20 s for FILE to have a line matching
# PATTERN; status 1 if it never does.
wait_for() {
    i=0
    while [ $i -lt 200 ]; do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1; i=$((i + 1))
    done
    return 1
}
