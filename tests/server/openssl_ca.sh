# openssl_ca.sh - sourced by test_pki.sh and test_reload.sh, which need
# certificates and CRLs roost pki never makes (expired, not yet valid,
# expiring in seconds) and so make them with `openssl ca`.
#
# openssl_ca_dir DIR: make DIR, the state `openssl ca -config DIR/ca.cnf`
# keeps (an empty index, serial 1000, CRL number 01), for signing with
# -selfsign or -cert/-keyfile and for -gencrl.
openssl_ca_dir() {
    mkdir -p "$1"
    ca_d=$(cd "$1" && pwd)
    : >"$ca_d/index.txt"
    echo 1000 >"$ca_d/serial"
    echo 01 >"$ca_d/crlnumber"
    cat >"$ca_d/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $ca_d/index.txt
new_certs_dir = $ca_d
serial = $ca_d/serial
crlnumber = $ca_d/crlnumber
default_md = sha256
policy = p
[p]
commonName = supplied
CNF
}
