#!/bin/sh
# `roost audit` and `roost status` on real coordinator databases: audit
# passes on a good file, fails naming the round after a single row is
# edited, inserted or deleted, and with --anchor catches a truncated
# history; status prints the last round in text and JSON.
#
# usage: test_audit.sh ROOST_BIN STORE_FIXTURE_BIN
set -u
roost="$1"
fixture="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail=0
out="$work/out"
. "$(dirname "$0")/checks.sh"


good="$work/good.db"
"$fixture" create "$good" 6 10 1000 || { echo "FAIL: fixture"; exit 1; }

check 0 "audit of an intact database" "$roost" audit --db "$good"
expect_text "audit reports the rounds" "chain intact: 6 rounds"
anchor=$("$fixture" head "$good")
check 0 "audit with a matching anchor" "$roost" audit --db "$good" --anchor "$anchor"
check 2 "audit without --db" "$roost" audit
check 2 "audit with a malformed anchor" "$roost" audit --db "$good" --anchor 3:xyz
check 1 "audit of a missing file" "$roost" audit --db "$work/none.db"

check 0 "status" "$roost" status --db "$good"
expect_text "status names the last round" "last round    6 (train, committed"
expect_text "status shows the open round" "open round    7"
expect_text "status shows the epsilon distribution" "epsilon       "
expect_text "status lists the recent rounds" "eps_med"
check 0 "status --json" "$roost" status --db "$good" --json
expect_text "json last round" '"last_round": {"round": 6'
expect_text "json epsilon" '"epsilon": {"clients": '
expect_text "json recent rounds (default 5)" '"recent_rounds": \[{"round": 2,'
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out" \
        && echo "ok: status --json parses" \
        || { echo "FAIL: status --json is not JSON"; fail=1; }
fi
# A file name that is not UTF-8 (Latin-1 "café"): still valid JSON, the
# stray byte shown as U+FFFD.
latin1="$work/$(printf 'caf\351').db"
cp "$good" "$latin1"
check 0 "status --json of a Latin-1 file name" "$roost" status --db "$latin1" --json
expect_text "json replaces the stray byte" 'caf\\ufffd\.db'
if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import json,sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$out" \
        && echo "ok: status --json of a Latin-1 name parses" \
        || { echo "FAIL: status --json of a Latin-1 name is not UTF-8 JSON"; fail=1; }
fi
check 2 "status --rounds out of range" "$roost" status --db "$good" --rounds 5000

tamper() { # description round sql
    desc=$1; round=$2; sql=$3
    cp "$good" "$work/t.db"
    rm -f "$work/t.db-wal" "$work/t.db-shm"
    "$fixture" sql "$work/t.db" "$sql" || { echo "FAIL: tamper $desc"; fail=1; return; }
    check 1 "audit detects: $desc" "$roost" audit --db "$work/t.db"
    expect_text "audit names round $round for: $desc" "first bad round $round:"
}
tamper "edited metric" 3 "UPDATE metrics SET value = 0 WHERE round_id = 3"
tamper "edited participant" 2 \
    "UPDATE participants SET status = 'dropped' WHERE round_id = 2 AND fingerprint = 'client-0004'"
tamper "edited update norm" 5 "UPDATE updates SET l2_norm = 0.1 WHERE round_id = 5 AND seq = 5"
tamper "edited checkpoint" 6 \
    "UPDATE checkpoints SET params = zeroblob(length(params)) WHERE round_id = 6"
tamper "deleted round" 4 "DELETE FROM rounds WHERE round_id = 4"
tamper "inserted update" 2 \
    "INSERT INTO updates (round_id, seq, fingerprint, received_ms, accepted, reason_code, bytes, examples_reported, examples_capped) VALUES (2, 11, 'client-0001', 0, 1, 0, 10, 5, 5)"
tamper "edited accuracy" 1 "UPDATE rounds SET eval_accuracy = 0.99 WHERE round_id = 1"

# Truncation of the newest round passes the chain alone; the anchor
# catches it.
cp "$good" "$work/t.db"
"$fixture" sql "$work/t.db" "DELETE FROM participants WHERE round_id = 6; DELETE FROM updates WHERE round_id = 6; DELETE FROM metrics WHERE round_id = 6; DELETE FROM checkpoints WHERE round_id = 6; DELETE FROM rounds WHERE round_id = 6"
check 0 "truncated history verifies without an anchor" "$roost" audit --db "$work/t.db"
check 1 "the anchor detects the truncation" "$roost" audit --db "$work/t.db" --anchor "$anchor"
expect_text "anchor message" "anchored round 6 is missing"

# A coordinator that has not committed anything yet.
empty="$work/empty.db"
"$fixture" create "$empty" 0 5 1000 || { echo "FAIL: fixture"; exit 1; }
check 0 "audit of an empty history" "$roost" audit --db "$empty"
expect_text "audit counts zero rounds" "chain intact: 0 rounds"
check 0 "status of an empty history" "$roost" status --db "$empty"
expect_text "status says nothing is committed" "none committed"
check 0 "status --json of an empty history" "$roost" status --db "$empty" --json
expect_text "json without a last round" '"last_round": null'

# A file that is not a coordinator database is refused.
printf 'not a database at all, just text\n' >"$work/junk.db"
check 1 "audit refuses a non-database" "$roost" audit --db "$work/junk.db"
check 1 "status refuses a non-database" "$roost" status --db "$work/junk.db"

# The database is never modified by audit or status.
before=$(cksum <"$good")
"$roost" audit --db "$good" >/dev/null 2>&1
"$roost" status --db "$good" >/dev/null 2>&1
after=$(cksum <"$good")
[ "$before" = "$after" ] && echo "ok: audit and status leave the file as it was" \
    || { echo "FAIL: the database changed"; fail=1; }

exit $fail
