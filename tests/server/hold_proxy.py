#!/usr/bin/env python3
"""A TCP relay that holds a TLS client's second flight.

usage: hold_proxy.py TARGET_PORT PORT_FILE HELD_FILE RELEASE_FILE

Listens on 127.0.0.1 (ephemeral port, written to PORT_FILE), accepts one
connection and relays it to 127.0.0.1:TARGET_PORT. The client's first
write (the ClientHello) goes through at once; everything the client sends
after it (in TLS 1.3: its Certificate, CertificateVerify and Finished) is
held back, HELD_FILE is created when there is something held, and the
bytes go on once RELEASE_FILE exists. test_reload.sh uses it to keep a
handshake unfinished across a SIGHUP.
"""
import os
import select
import socket
import sys

target, port_file, held_file, release_file = (int(sys.argv[1]), sys.argv[2],
                                              sys.argv[3], sys.argv[4])
lsock = socket.socket()
lsock.bind(("127.0.0.1", 0))
lsock.listen(1)
with open(port_file + ".tmp", "w") as f:
    f.write("%d\n" % lsock.getsockname()[1])
os.rename(port_file + ".tmp", port_file)
lsock.settimeout(30)
client, _ = lsock.accept()
server = socket.create_connection(("127.0.0.1", target))
first_sent = False
held = b""
released = False
while True:
    if not released and os.path.exists(release_file):
        released = True
        if held:
            server.sendall(held)
            held = b""
    r, _, _ = select.select([client, server], [], [], 0.1)
    if client in r:
        data = client.recv(65536)
        if not data:
            break
        if not first_sent or released:
            server.sendall(data)
            first_sent = True
        else:
            held += data
            open(held_file, "w").close()
    if server in r:
        data = server.recv(65536)
        if not data:
            break
        client.sendall(data)
