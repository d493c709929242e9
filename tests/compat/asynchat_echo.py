"""A line echo over ``asynchat.async_chat`` (PyPI ``pyasynchat`` on Python 3.12+), written
only against the asynchat/asyncore API.  Run as a script it prints one JSON line saying
which ``asyncore`` and ``asynchat`` ran it and what happened::

    python asynchat_echo.py [--use-poll]
"""

import asynchat
import asyncore
import json
import socket
import sys
from typing import Any, List

LINES = [b"hello", b"x" * 100_000, b"last"]


class LineEcho(asynchat.async_chat):
    def __init__(self, sock: socket.socket) -> None:
        asynchat.async_chat.__init__(self, sock)
        self.set_terminator(b"\n")
        self.parts: List[bytes] = []

    def collect_incoming_data(self, data: bytes) -> None:
        self.parts.append(data)

    def found_terminator(self) -> None:
        self.push(b"".join(self.parts) + b"\n")
        self.parts = []


class Server(asyncore.dispatcher):
    def __init__(self) -> None:
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.bind(("127.0.0.1", 0))
        assert self.socket is not None
        self.addr = self.socket.getsockname()
        self.listen(5)

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        LineEcho(sock)


class Client(asynchat.async_chat):
    def __init__(self, address: Any, server: Server) -> None:
        asynchat.async_chat.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)
        self.set_terminator(b"\n")
        self.server = server
        self.parts: List[bytes] = []
        self.replies: List[bytes] = []
        for line in LINES:
            self.push(line + b"\n")

    def collect_incoming_data(self, data: bytes) -> None:
        self.parts.append(data)

    def found_terminator(self) -> None:
        self.replies.append(b"".join(self.parts))
        self.parts = []
        if len(self.replies) == len(LINES):
            self.close_when_done()
            self.server.close()


def main(argv: List[str]) -> None:
    use_poll = "--use-poll" in argv
    server = Server()
    client = Client(server.addr, server)
    asyncore.loop(timeout=5.0, use_poll=use_poll)
    print(
        json.dumps(
            {
                "asyncore": asyncore.__name__,
                "asynchat": asynchat.__file__,
                "asynchat_uses": vars(asynchat)["asyncore"].__name__,
                "python": list(sys.version_info[:2]),
                "use_poll": use_poll,
                "echoed_ok": client.replies == LINES,
                "left_in_map": len(asyncore.socket_map),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
