#!/bin/sh
# The roost program's command-line contract: --version, --help, per-command
# --help, unknown commands and commands not built yet exit 2.
set -u
roost="$1"
fail=0
check() { # expected-status description command...
    want=$1; what=$2; shift 2
    "$@" >/tmp/roost_cli_out.$$ 2>&1
    got=$?
    if [ "$got" -ne "$want" ]; then
        echo "FAIL: $what: exit $got, want $want"; cat /tmp/roost_cli_out.$$
        fail=1
    else
        echo "ok: $what"
    fi
}
check 0 "--version" "$roost" --version
"$roost" --version | grep -q '^roost [0-9]' || { echo "FAIL: version text"; fail=1; }
check 0 "--help" "$roost" --help
check 2 "no command" "$roost"
check 2 "unknown command" "$roost" frobnicate
for c in serve client sim train dp pki status report audit; do
    check 0 "$c --help" "$roost" "$c" --help
    "$roost" --help | grep -q "^  $c " || { echo "FAIL: $c not listed"; fail=1; }
done
# A command listed as not built must refuse to run with status 2.
for c in $("$roost" --help | awk '/\(not built yet\)/ {print $1}'); do
    check 2 "$c not built" "$roost" "$c"
done
rm -f /tmp/roost_cli_out.$$
exit $fail
