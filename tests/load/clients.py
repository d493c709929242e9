"""The client side of the load tests, run in its own process (each process may hold
20,000 descriptors here, so 10,000 connections need the clients elsewhere).

    python clients.py PORT COUNT

Opens COUNT connections to 127.0.0.1:PORT (at most ``IN_FLIGHT`` still connecting at a
time), sends on each a random payload followed by its SHA-256, and reads the echo.  A
connection is *served* when the whole echo came back with a matching checksum, *refused*
when the server closed it before echoing anything, and *lost* otherwise.  Every
connection stays open until all are settled, so COUNT are held at once.  Written with
the standard ``selectors`` module, independent of the library under test.  Prints one
line of JSON with the counts.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import selectors
import socket
import sys
import time
from typing import Dict, List

IN_FLIGHT = 500
PAYLOAD = 96
DEADLINE = 120.0


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setblocking(False)
        err = self.sock.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, os.strerror(err))
        body = os.urandom(PAYLOAD)
        self.out = body + hashlib.sha256(body).digest()
        self.sent = 0
        self.back = bytearray()
        self.state = "connecting"


def main(port: int, count: int) -> Dict[str, object]:
    sel = selectors.DefaultSelector()
    conns: List[Conn] = []
    settled: Dict[str, int] = {"served": 0, "refused": 0, "lost": 0}
    connecting = 0
    held = 0
    end = time.monotonic() + DEADLINE

    def settle(conn: Conn, how: str) -> None:
        conn.state = how
        settled[how] += 1
        sel.unregister(conn.sock)

    while sum(settled.values()) < count:
        if time.monotonic() > end:
            raise SystemExit(f"clients.py: gave up after {DEADLINE} s with {settled}")
        while len(conns) < count and connecting < IN_FLIGHT:
            conn = Conn(port)
            conns.append(conn)
            connecting += 1
            sel.register(conn.sock, selectors.EVENT_WRITE, conn)
        held = max(held, sum(1 for c in conns if c.state in ("connecting", "open", "served")))
        for key, mask in sel.select(1.0):
            conn = key.data
            if conn.state == "connecting":
                connecting -= 1
                if conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    settle(conn, "lost")
                    continue
                conn.state = "open"
            if mask & selectors.EVENT_WRITE and conn.sent < len(conn.out):
                conn.sent += conn.sock.send(conn.out[conn.sent :])
                if conn.sent == len(conn.out):
                    sel.modify(conn.sock, selectors.EVENT_READ, conn)
            if mask & selectors.EVENT_READ:
                try:
                    data = conn.sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    settle(conn, "refused" if not conn.back else "lost")
                    continue
                conn.back += data
                if len(conn.back) >= len(conn.out):
                    body, digest = bytes(conn.back[:PAYLOAD]), bytes(conn.back[PAYLOAD:])
                    ok = bytes(conn.back) == conn.out and hashlib.sha256(body).digest() == digest
                    settle(conn, "served" if ok else "lost")
    open_now = sum(1 for c in conns if c.sock.fileno() >= 0)
    for c in conns:
        c.sock.close()
    return {**settled, "held_at_once": open_now, "max_open": held}


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), int(sys.argv[2]))), flush=True)
