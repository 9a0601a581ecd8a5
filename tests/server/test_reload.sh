#!/bin/sh
# `roost serve` reloads its TLS files on SIGHUP, with real processes:
#   - a device completes a round; it is revoked (`roost pki revoke`), the
#     daemon gets SIGHUP, and the device's next connection is refused
#     ("certificate revoked") while another device still completes a round;
#   - a session of a certificate revoked while it is open is closed by the
#     reload (the coordinator sees a disconnect), and so is one whose
#     certificate has a serial too long to look up in a CRL (40 bytes,
#     issued with the openssl tool): it must reconnect and pass the
#     handshake's check;
#   - a handshake begun before a revocation and finished after the reload
#     (held half-way by tests/server/hold_proxy.py) is closed as it opens,
#     and so is one of a certificate whose serial cannot be looked up
#     (dev6, 40 bytes): nothing checked it against the reloaded CRL; without
#     a reload during its handshake, such a certificate gets in;
#   - a session is closed when its certificate expires (dev5, issued with
#     `openssl ca` to expire seconds after it connects);
#   - a reload with a bad CRL keeps the previous files in force;
#   - an older CRL (a lower cRLNumber than the one in force, which would
#     un-revoke dev0 and dev2) is refused by a reload, and so is a CRL
#     re-signed under the number in force with other entries: dev0 stays
#     refused; a restart with the older CRL is refused too (the database
#     remembers the number), until `roost serve --accept-older-crl`
#     records it deliberately;
#   - one CA key under two names, each name with its CRL: two issuers,
#     each with its own record, so reloads with these files pass;
#   - a reload that replaces the CA (new CA file, CRL and server
#     certificate) closes the open sessions of the old CA's devices;
#   - `roost pki crl` re-signs the CRL (same entries, new validity), and the
#     daemon warns about a CRL that expires within 30 days and reports an
#     expired one as an error, at start and at reload; re-signing an
#     expired CRL and reloading lets clients in again; a CRL not valid yet
#     (lastUpdate ahead of this host's clock) is reported as an error.
#
# usage: test_reload.sh ROOST_BIN
set -u
roost=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/openssl_ca.sh"
work=$(mktemp -d)
pid=
hold=
hold3=
hold4=
hold5=
hold1=
proxy=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    [ -n "$hold" ] && kill -KILL "$hold" 2>/dev/null
    [ -n "$hold3" ] && kill -KILL "$hold3" 2>/dev/null
    [ -n "$hold4" ] && kill -KILL "$hold4" 2>/dev/null
    [ -n "$hold5" ] && kill -KILL "$hold5" 2>/dev/null
    [ -n "$hold1" ] && kill -KILL "$hold1" 2>/dev/null
    [ -n "$proxy" ] && kill -KILL "$proxy" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT; [ -n "${KEEP:-}" ] && trap - EXIT
fail=0
out="$work/out"
. "$here/checks.sh"

count() { grep -c -- "$2" "$1" 2>/dev/null || true; }
# more_than N PATTERN [TENTHS]: wait up to TENTHS tenths of a second
# (default 200) for serve.log to hold more than N lines matching PATTERN;
# status 1 if it never does.
more_than() {
    _i=0
    while [ "$(count serve.log "$2")" -le "$1" ]; do
        [ $_i -ge "${3:-200}" ] && return 1
        sleep 0.1; _i=$((_i + 1))
    done
}
# Send SIGHUP and wait for the reload's verdict (success or failure).
reload() {
    n=$(count serve.log "SIGHUP: TLS files")
    kill -HUP "$pid"
    more_than "$n" "SIGHUP: TLS files"
}
# A handshake with a device's certificate that the daemon must refuse as
# revoked: a new "certificate revoked" line in the log within 10 s.
refused_as_revoked() { # device ok-message bad-message
    m=$(count serve.log "certificate revoked$")
    handshake "$1"
    more_than "$m" "certificate revoked$" 100 && ok "$2" || bad "$3"
}

if ! command -v openssl >/dev/null 2>&1; then
    echo "skip: openssl not installed"
    exit 0
fi
cd "$work" || exit 1
"$roost" pki init --dir ca --cn "Reload Test CA" >/dev/null &&
    "$roost" pki server --ca-dir ca --name localhost,127.0.0.1 \
        --out server >/dev/null || { echo "FAIL: pki setup"; exit 1; }
for d in dev0 dev1 dev2 dev4; do
    "$roost" pki request --cn "$d" --out "$d" >/dev/null &&
        "$roost" pki sign --ca-dir ca --csr "$d.csr" --out "$d.crt" \
            >/dev/null || { echo "FAIL: certificate for $d"; exit 1; }
done
# dev3: the same extensions as `roost pki sign`, but a 40-byte serial
# (RFC 5280 allows 20), which Roost cannot look up in a CRL.
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >dev3.ext
"$roost" pki request --cn dev3 --out dev3 >/dev/null &&
    openssl x509 -req -in dev3.csr -CA ca/ca.crt -CAkey ca/ca.key \
        -set_serial "0x$(printf '7f%.0s' $(seq 1 40))" -days 30 \
        -extfile dev3.ext -out dev3.crt >/dev/null 2>&1 ||
    { echo "FAIL: certificate for dev3"; exit 1; }
"$roost" pki request --cn dev6 --out dev6 >/dev/null &&
    openssl x509 -req -in dev6.csr -CA ca/ca.crt -CAkey ca/ca.key \
        -set_serial "0x$(printf '7e%.0s' $(seq 1 40))" -days 30 \
        -extfile dev3.ext -out dev6.crt >/dev/null 2>&1 ||
    { echo "FAIL: certificate for dev6"; exit 1; }

# --- roost pki crl -----------------------------------------------------
check 0 "pki crl --help" "$roost" pki crl --help
expect_text "help names --days" "--days N"
check 2 "pki crl without --ca-dir" "$roost" pki crl
check 2 "pki crl --days 0 refused" "$roost" pki crl --ca-dir ca --days 0
check 0 "pki crl re-signs an empty CRL" "$roost" pki crl --ca-dir ca --days 10
expect_text "reports the entry count" "0 revoked certificates, valid 10 days"
openssl crl -in ca/ca.crl -noout -nextupdate >"$out" 2>&1
nu=$(sed -n 's/^nextUpdate=//p' "$out")
want=$(date -u -d "+10 days" "+%b %e")
case "$nu" in "$want"*) ok "nextUpdate is 10 days away ($nu)" ;;
*) bad "nextUpdate '$nu', want $want" ;; esac
check 0 "openssl verifies the re-signed CRL" \
    openssl crl -in ca/ca.crl -CAfile ca/ca.crt -noout

mkdir state
{ serve_conf; cat <<EOF; } >serve.conf
[round]
clients_per_round = 1
timeout = 2min
EOF
start_daemon "daemon did not start"
expect_text "start logs what TLS loaded" \
    "TLS: CA ca/ca.crt, certificate server.crt; CRL ca/ca.crl: 0 revoked, next update 20" \
    serve.log
expect_text "start warns: CRL expires within 30 days" \
    "warn: CRL ca/ca.crl expires at .* (in [0-9]* days).*roost pki crl --ca-dir" \
    serve.log

# --- a device completes a round --------------------------------------
fmnist=${ROOST_FMNIST_DIR:-/usr/share/datasets/fashion-mnist}
rounds=no
if [ -e "$fmnist/train-labels-idx1-ubyte.gz" ] ||
    [ -e "$fmnist/train-labels-idx1-ubyte" ]; then
    rounds=yes
fi
client() { # device log
    timeout 120 "$roost" client --connect "tcp://127.0.0.1:$port" \
        --ca ca/ca.crt --cert "$1.crt" --key "$1.key" --ledger "$1.db" \
        --create-ledger --shard 0/300 --data "$fmnist" --rounds 1 >"$2" 2>&1
}
if [ $rounds = yes ]; then
    check 0 "dev0 completes a round" client dev0 client0.log
    expect_text "round 1 committed with dev0" "round 1 committed" serve.log
else
    echo "skip: no Fashion-MNIST in $fmnist; rounds not exercised"
    handshake dev0
    wait_for serve.log "opened: CN=dev0" && ok "dev0 connects" ||
        bad "dev0 did not connect"
fi

# A session held open: s_client reads a fifo whose writing end this shell
# keeps open on descriptor FD; held receives its pid.
hold_session() { # device fd
    mkfifo "hold-$1.in"
    openssl s_client -connect "127.0.0.1:$port" -CAfile ca/ca.crt \
        -cert "$1.crt" -key "$1.key" -tls1_3 -brief <"hold-$1.in" \
        >"hold-$1.out" 2>&1 &
    held=$!
    eval "exec $2>hold-$1.in"
}
release_session() { # pid fd
    eval "exec $2>&-"
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}
# dev2 and dev3 hold sessions open across the revocation.
hold_session dev2 3
hold=$held
wait_for serve.log "opened: CN=dev2" && ok "dev2 holds an open session" ||
    bad "dev2 session did not open"
hold_session dev3 4
hold3=$held
wait_for serve.log "opened: CN=dev3" &&
    ok "dev3 (40-byte serial) holds an open session" ||
    bad "dev3 session did not open"

# --- revoke dev0 and dev2, reload ------------------------------------
cp ca/ca.crl crl-2.crl # cRLNumber 2: before the revocations
check 0 "revoke dev0" "$roost" pki revoke --ca-dir ca --cert dev0.crt
expect_text "revoke says how to apply it" "systemctl reload roost"
check 0 "revoke dev2" "$roost" pki revoke --ca-dir ca --cert dev2.crt
opened0=$(count serve.log "opened: CN=dev0")
reload
expect_text "reload succeeded" "SIGHUP: TLS files reloaded" serve.log
expect_text "reload logs the new CRL" "CRL ca/ca.crl: 2 revoked" serve.log
expect_text "dev2's open session closed by the reload" \
    "(CN=dev2): closing: certificate revoked by the reloaded CRL" serve.log
expect_text "one open session closed" "1 open session of revoked" serve.log
expect_text "dev3's session closed: serial cannot be checked" \
    "(CN=dev3): closing: its certificate's serial number cannot be checked" \
    serve.log
expect_text "the reload counts it" "1 whose serial cannot be checked" serve.log
if wait_for serve.log "session.*CN=dev2.*closed"; then
    ok "the coordinator saw dev2 leave"
else
    bad "no close of dev2 logged"
fi
release_session "$hold" 3
hold=
release_session "$hold3" 4
hold3=

handshake dev0
if wait_for serve.log "certificate revoked$"; then
    ok "dev0's new connection refused: certificate revoked"
else
    bad "dev0 not refused after the reload"; tail -5 serve.log
fi
[ "$(count serve.log "opened: CN=dev0")" -eq "$opened0" ] &&
    ok "no new dev0 session opened" || bad "revoked dev0 opened a session"
if [ $rounds = yes ]; then
    check 0 "dev1 still completes a round" client dev1 client1.log
    # (dev0 was selected for round 2 as it left, so dev1's round is 3.)
    [ "$(count serve.log "committed: 1/1 updates")" -eq 2 ] &&
        ok "a second round committed with dev1" ||
        { bad "no second round committed"; cat serve.log; }
else
    handshake dev1
    expect_text "dev1 still connects" "Protocol version: TLSv1.3" \
        "$work/sc-dev1.out"
fi

# --- an older CRL: refused at reload and at restart -------------------
# Putting back a CRL from before the revocations (cRLNumber 2; 4 is in
# force) would un-revoke dev0 and dev2.
cp ca/ca.crl crl-4.crl
cp crl-2.crl ca/ca.crl
reload
expect_text "older CRL: reload refused, naming file, issuer and numbers" \
    "error: SIGHUP: TLS files not reloaded, the previous ones stay in force: CRL ca/ca.crl: issuer CN=Reload Test CA: cRLNumber 2 is lower than 4, recorded in the database: an older CRL would un-revoke certificates" \
    serve.log
expect_text "the reload says how to go back on purpose" \
    "and reload (systemctl reload roost); to use this CRL on purpose, run 'roost serve --config FILE --accept-older-crl' first" \
    serve.log
refused_as_revoked dev0 "dev0 still refused: its revocation stays in force" \
    "dev0 let in after an older CRL was put back"
# The same number re-signed with other entries (a copy of the CA signs the
# old CRL twice: cRLNumber 4 without dev0 and dev2).
cp -r ca ca-fork
cp crl-2.crl ca-fork/ca.crl
"$roost" pki crl --ca-dir ca-fork >/dev/null &&
    "$roost" pki crl --ca-dir ca-fork >/dev/null || bad "forked CRL"
cp ca-fork/ca.crl ca/ca.crl
reload
expect_text "another CRL under the number in force: refused" \
    "not reloaded.*CRL ca/ca.crl: issuer CN=Reload Test CA: cRLNumber 4 is the number in force, but the CRL differs" \
    serve.log
cp crl-4.crl ca/ca.crl
reload
expect_text "the CRL in force reloads" \
    "SIGHUP: TLS files reloaded; new handshakes use them; 0 open sessions" \
    serve.log
# A restart does not forget: the database holds the highest number.
kill -TERM "$pid"; wait "$pid"; pid=
mv serve.log serve.log.0
cp crl-2.crl ca/ca.crl
check 2 "restart with the older CRL refused (exit 2)" \
    timeout 20 "$roost" serve --config serve.conf
expect_text "restart names the file, issuer and numbers" \
    "error: TLS: CRL ca/ca.crl: issuer CN=Reload Test CA: cRLNumber 2 is lower than 4, recorded in the database" \
    serve.log
expect_text "and the way back" \
    "error: install the CA's newest CRL as ca/ca.crl .* and start again; to use this CRL on purpose, run 'roost serve --config FILE --accept-older-crl' first" \
    serve.log
check 0 "--accept-older-crl records the older CRL" \
    "$roost" serve --config serve.conf --accept-older-crl
expect_text "it says what it replaced" \
    "issuer CN=Reload Test CA: cRLNumber 2 recorded (was 4)"
cp crl-4.crl ca/ca.crl
mv serve.log serve.log.00
start_daemon "restart with the newest CRL"
ok "restart with the newest CRL"
refused_as_revoked dev0 "dev0 refused after the restart" \
    "dev0 let in after restart"
cp crl-2.crl ca/ca.crl
reload
expect_text "the newest CRL is recorded again at start" \
    "cRLNumber 2 is lower than 4" serve.log
cp crl-4.crl ca/ca.crl

# --- handshakes that straddle the reload ------------------------------
# A handshake starts under the old CRL: the relay passes its ClientHello
# and holds its certificate. The CRL changes and the daemon reloads; then
# the certificate goes on. The session was made from the old TLS context,
# so the handshake checked the certificate against the old CRL only: the
# daemon must check the identity against the CRL in force as it opens.
# straddle DEVICE FD CHANGE...: hold DEVICE's handshake (s_client reading
# from descriptor FD), run CHANGE, reload, let the handshake finish; sets
# hold4 and proxy. Returns 1 if the relay did not hold the handshake.
straddle() {
    dev=$1 fd=$2
    shift 2
    rm -f proxy.port proxy.held proxy.release "hold-$dev.in"
    python3 "$here/hold_proxy.py" "$port" proxy.port proxy.held \
        proxy.release 2>proxy.err &
    proxy=$!
    i=0
    while [ ! -s proxy.port ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    mkfifo "hold-$dev.in"
    openssl s_client -connect "127.0.0.1:$(cat proxy.port)" \
        -CAfile ca/ca.crt -cert "$dev.crt" -key "$dev.key" -tls1_3 -brief \
        <"hold-$dev.in" >"hold-$dev.out" 2>&1 &
    hold4=$!
    eval "exec $fd>hold-$dev.in"
    i=0
    while [ ! -e proxy.held ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i + 1)); done
    if [ ! -e proxy.held ]; then
        bad "the relay did not hold $dev's handshake"; cat proxy.err
        return 1
    fi
    ok "$dev's handshake is half done"
    "$@"
    reload
    : >proxy.release
    return 0
}
unstraddle() { # fd
    eval "exec $1>&-"
    kill "$hold4" "$proxy" 2>/dev/null
    wait "$hold4" "$proxy" 2>/dev/null
    hold4=
    proxy=
}
if command -v python3 >/dev/null 2>&1; then
    # dev4 is revoked while its handshake is held.
    if straddle dev4 5 check 0 "revoke dev4" \
        "$roost" pki revoke --ca-dir ca --cert dev4.crt; then
        expect_text "reload with dev4 revoked" "CRL ca/ca.crl: 3 revoked" \
            serve.log
        if wait_for serve.log "(CN=dev4): closing: certificate revoked"; then
            ok "dev4's session closed as it opened after the reload"
        else
            bad "dev4 opened a session after its revocation was reloaded"
            tail -5 serve.log
        fi
    fi
    unstraddle 5
    # dev6's serial (40 bytes, like dev3's) cannot be looked up in the new
    # CRL: its session cannot be cleared, so it is closed as it opens, as
    # the reload closed dev3's open session.
    if straddle dev6 5 check 0 "pki crl re-issues the CRL" \
        "$roost" pki crl --ca-dir ca; then
        if wait_for serve.log "(CN=dev6): closing: its certificate's serial number cannot be checked against the reloaded CRL.*(its handshake began before the reload)"; then
            ok "dev6's session closed as it opened after the reload"
        else
            bad "dev6 opened a session its serial kept from the reloaded CRL"
            tail -5 serve.log
        fi
    fi
    unstraddle 5
    # Without a reload in between, the handshake checked the certificate
    # against the CRL in force: a serial that cannot be looked up gets in.
    n=$(count serve.log "closing: its certificate's serial number")
    m=$(count serve.log "opened: CN=dev6 ")
    rm -f hold-dev6.in
    hold_session dev6 5
    hold4=$held
    more_than "$m" "opened: CN=dev6 " &&
        ok "dev6 connects when no reload interrupts its handshake" ||
        bad "dev6 refused without a reload"
    handshake dev1 # a session opened later: dev6's is past its check
    [ "$(count serve.log "closing: its certificate's serial number")" -eq "$n" ] &&
        ok "dev6's session stays open" ||
        { bad "dev6's session closed without a reload"; tail -5 serve.log; }
    release_session "$hold4" 5
    hold4=
else
    echo "skip: no python3; handshakes across a reload are not exercised"
fi

# --- a certificate that expires while its session is open --------------
# The handshake checks the validity period once; sessions stay open across
# rounds, so the daemon closes a session when its certificate expires.
openssl_ca_dir oca2
if "$roost" pki request --cn dev5 --out dev5 >/dev/null &&
    openssl ca -config oca2/ca.cnf -batch -notext -in dev5.csr \
        -cert ca/ca.crt -keyfile ca/ca.key -startdate 20200101000000Z \
        -enddate "$(date -u -d '+10 seconds' +%Y%m%d%H%M%SZ)" \
        -extfile dev3.ext -out dev5.crt >"$out" 2>&1; then
    hold_session dev5 6
    hold5=$held
    wait_for serve.log "opened: CN=dev5" && ok "dev5 holds an open session" ||
        bad "dev5 session did not open"
    if wait_for serve.log "(CN=dev5): closing: its certificate expired at"; then
        ok "dev5's session closed when its certificate expired"
    else
        bad "dev5's session outlived its certificate"; tail -3 serve.log
    fi
    release_session "$hold5" 6
    hold5=
else
    echo "skip: openssl ca cannot issue a short-lived certificate:"; cat "$out"
fi

# --- a bad CRL: the previous files stay in force ---------------------
cp ca/ca.crl good.crl
echo "not a CRL" >ca/ca.crl
reload
expect_text "bad CRL: reload refused with the reason" \
    "error: SIGHUP: TLS files not reloaded, the previous ones stay in force: CRL ca/ca.crl: no PEM X509 CRL" \
    serve.log
kill -0 "$pid" 2>/dev/null && ok "daemon still running" ||
    bad "daemon died on a bad reload"
n=$(count serve.log "opened: CN=dev1")
handshake dev1
expect_text "dev1 still handshakes under the previous files" \
    "Protocol version: TLSv1.3" "$work/sc-dev1.out"
wait_for serve.log "certificate revoked" >/dev/null
refused_as_revoked dev0 "dev0 still refused under the previous CRL" \
    "dev0 let in after a failed reload"
# A CRL from another CA is refused too (it would fail every handshake).
"$roost" pki init --dir other --cn "Other CA" >/dev/null
cp other/ca.crl ca/ca.crl
reload
expect_text "foreign CRL: reload refused" \
    "not reloaded.*CRL ca/ca.crl: not signed by the CA in ca/ca.crt" serve.log
cp good.crl ca/ca.crl
# A server certificate from another CA: every client would refuse it, so
# the reload is refused and the previous certificate stays.
"$roost" pki server --ca-dir other --name localhost,127.0.0.1 \
    --out other-server >/dev/null
cp server.crt server.crt.good
cp server.key server.key.good
cp other-server.crt server.crt
cp other-server.key server.key
reload
expect_text "server certificate of another CA: reload refused" \
    "not reloaded.*certificate server.crt does not verify against CA ca/ca.crt" \
    serve.log
cp server.crt.good server.crt
cp server.key.good server.key
handshake dev1
expect_text "dev1 still handshakes with the previous certificate" \
    "Protocol version: TLSv1.3" "$work/sc-dev1.out"
# The CA replaced (say, after its key leaked): new CA file, CRL and server
# certificate. dev1's open session was verified to the old CA, which the
# new CA file does not hold: the reload closes it.
n=$(count serve.log "opened: CN=dev1")
hold_session dev1 7
hold1=$held
more_than "$n" "opened: CN=dev1"
# The new CA's CRL comes without a cRLNumber (openssl ca without a
# crlnumber file), as CRLs of roost pki before it numbered them: it loads,
# since no numbered CRL of that CA was seen.
openssl_ca_dir oca3
sed -i '/^crlnumber/d' oca3/ca.cnf
openssl ca -config oca3/ca.cnf -gencrl -crldays 30 -keyfile other/ca.key \
    -cert other/ca.crt -out unnumbered.crl >"$out" 2>&1 ||
    { bad "unnumbered CRL"; cat "$out"; }
openssl crl -in unnumbered.crl -noout -text >"$out" 2>&1
grep -q "CRL Number" "$out" && bad "the unnumbered CRL has a number"
cp ca/ca.crt ca.crt.good
cp other/ca.crt ca/ca.crt
cp unnumbered.crl ca/ca.crl
cp other-server.crt server.crt
cp other-server.key server.key
reload
expect_text "reload with a new CA" "1 whose CA is no longer trusted" serve.log
expect_text "dev1's session of the old CA closed" \
    "(CN=dev1): closing: its CA is not in the reloaded CA file" serve.log
release_session "$hold1" 7
hold1=
# Its numbered CRL replaces the unnumbered one; after that, an unnumbered
# CRL counts as 0 and is older.
before=$(count serve.log "SIGHUP: TLS files reloaded")
cp other/ca.crl ca/ca.crl
reload
[ "$(count serve.log "SIGHUP: TLS files reloaded")" -gt "$before" ] &&
    ok "a numbered CRL replaces the unnumbered one" ||
    bad "numbered CRL after an unnumbered one not reloaded"
cp unnumbered.crl ca/ca.crl
reload
expect_text "an unnumbered CRL after a numbered one: refused" \
    "not reloaded.*CRL ca/ca.crl: issuer CN=Other CA: cRLNumber 0 is lower than 1" \
    serve.log
cp ca.crt.good ca/ca.crt
cp good.crl ca/ca.crl
cp server.crt.good server.crt
cp server.key.good server.key
reload
expect_text "the old CA restored" "0 whose CA is no longer trusted" serve.log

# --- an expired CRL ---------------------------------------------------
# openssl ca writes a CRL with a nextUpdate in the past (roost pki never
# does), with no entries.
openssl_ca_dir oca
# The daemon refuses a CRL numbered below the one in force: number the
# CRLs openssl ca makes after ca/ca.crl's.
next_crlnumber() { # dir
    cur=$(openssl crl -in ca/ca.crl -noout -crlnumber | sed 's/^crlNumber=0x//')
    printf '%02X\n' $((0x$cur + 1)) >"$1/crlnumber"
}
next_crlnumber oca
if openssl ca -config oca/ca.cnf -gencrl -keyfile ca/ca.key -cert ca/ca.crt \
    -crl_lastupdate 20000101000000Z -crl_nextupdate 20000102000000Z \
    -out ca/ca.crl >"$out" 2>&1; then
    reload
    expect_text "expired CRL reported at reload" \
        "error: CRL ca/ca.crl expired at 2000-01-02 00:00:00Z: every client handshake fails.*roost pki crl --ca-dir" \
        serve.log
    handshake dev1
    if wait_for serve.log "CRL has expired"; then
        ok "an expired CRL refuses clients (what the error warns about)"
    else
        bad "expired CRL not seen in handshakes"
    fi
    kill -TERM "$pid"; wait "$pid"; pid=
    mv serve.log serve.log.1
    start_daemon "restart"
    expect_text "expired CRL reported at start" \
        "error: CRL ca/ca.crl expired at 2000-01-02" serve.log
    check 0 "pki crl re-signs the expired CRL" "$roost" pki crl --ca-dir ca
    expect_text "entry count from the openssl CRL" "0 revoked certificates"
    reload
    expect_text "reloaded CRL valid a year" "next update 20" serve.log
    n=$(count serve.log "opened: CN=dev1")
    handshake dev1
    wait_for serve.log "opened: CN=dev1" &&
        [ "$(count serve.log "opened: CN=dev1")" -gt "$n" ] &&
        ok "dev1 connects after re-signing and reload" ||
        bad "dev1 not let in after re-signing"
    # A CRL whose lastUpdate is still to come (the CA's clock ahead of
    # this host's): OpenSSL refuses every client until then.
    next_crlnumber oca
    openssl ca -config oca/ca.cnf -gencrl -keyfile ca/ca.key -cert ca/ca.crt \
        -crl_lastupdate "$(date -u -d '+1 day' +%Y%m%d%H%M%SZ)" \
        -crl_nextupdate "$(date -u -d '+30 days' +%Y%m%d%H%M%SZ)" \
        -out ca/ca.crl >"$out" 2>&1 || { bad "future CRL"; cat "$out"; }
    reload
    expect_text "a CRL not yet valid is reported" \
        "error: CRL ca/ca.crl is not valid before .*clock is behind" serve.log
    check 0 "pki crl re-signs the CRL not yet valid" "$roost" pki crl --ca-dir ca
    reload
else
    echo "skip: openssl ca cannot back-date a CRL:"; cat "$out"
fi

# Re-signing keeps the entries: revoke, then crl.
check 0 "revoke dev1" "$roost" pki revoke --ca-dir ca --cert dev1.crt --crl-days 5
check 0 "pki crl after a revoke" "$roost" pki crl --ca-dir ca --days 400
expect_text "pki crl keeps the entry" "1 revoked certificate, valid 400 days"
openssl crl -in ca/ca.crl -noout -text >"$out" 2>&1
serial=$(openssl x509 -in dev1.crt -noout -serial | sed 's/serial=//')
expect_text "dev1's serial still listed" "Serial Number: $serial"

# --- one CA key under two names ---------------------------------------
# The CA re-issued under a new name with its key, both trusted for a
# while, each name with its CRL: two issuers (name and key), numbered
# apart (the renamed one's CRL is number 1). Each has its own record: a
# reload with these files, and another, must not compare one name's
# number with the other's.
openssl req -new -x509 -key ca/ca.key -subj "/CN=Renamed Test CA" -days 30 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out renamed.crt >"$out" 2>&1 || { bad "renamed CA"; cat "$out"; }
openssl_ca_dir rca
openssl ca -config rca/ca.cnf -gencrl -crldays 30 -keyfile ca/ca.key \
    -cert renamed.crt -out renamed.crl >"$out" 2>&1 ||
    { bad "renamed CA's CRL"; cat "$out"; }
cp ca/ca.crt ca.crt.one
cp ca/ca.crl ca.crl.one
cat renamed.crt >>ca/ca.crt
cat renamed.crl >>ca/ca.crl
before=$(count serve.log "SIGHUP: TLS files reloaded")
reload
reload
[ "$(count serve.log "SIGHUP: TLS files reloaded")" -eq $((before + 2)) ] &&
    ok "two names of one CA key: each its own record, reloads pass" ||
    { bad "two names of one CA key: reload refused"; grep "not reloaded" serve.log | tail -1; }
cp ca.crt.one ca/ca.crt
cp ca.crl.one ca/ca.crl
reload

kill -TERM "$pid"
wait "$pid"
st=$?
pid=
[ "$st" -eq 0 ] && ok "SIGTERM exits 0" || bad "SIGTERM exit $st"
exit $fail
