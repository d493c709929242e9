"""An echo server and its clients, written only against the stdlib ``asyncore`` API.

Deliberately plain asyncore code in the style of the stdlib documentation's examples: it
does ``import asyncore`` and knows nothing of pike-core.  Run as a script it serves its own
clients until every echo came back, then prints one JSON line saying which ``asyncore`` ran
it and what happened::

    python asyncore_echo.py [--use-poll]
"""

import asyncore
import json
import socket
import sys
from typing import Any, List, Set

# Sizes that fit one send, and one that needs many passes of writable()/handle_write.
MESSAGES = [b"ping", bytes(range(256)) * 40, b"x" * 300_000]
ROUNDS = 5


class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self) -> None:
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):
    def __init__(self, host: str) -> None:
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, 0))
        self.listen(5)
        assert self.socket is not None
        self.address = self.socket.getsockname()
        self.accepted = 0

    def handle_accepted(self, sock: socket.socket, addr: Any) -> None:
        self.accepted += 1
        EchoHandler(sock)


class EchoClient(asyncore.dispatcher):
    """Sends its message ROUNDS times, each once the previous echo came back whole; the
    last client to finish closes the server, which ends asyncore.loop()."""

    def __init__(self, address: Any, message: bytes, peers: "Set[EchoClient]", server: EchoServer) -> None:
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect(address)
        self.message = message
        self.buffer = message
        self.received = b""
        self.echoed = 0
        self.mismatches = 0
        self.saw_connect = False
        self.peers = peers
        self.server = server

    def handle_connect(self) -> None:
        self.saw_connect = True

    def writable(self) -> bool:
        return len(self.buffer) > 0

    def handle_write(self) -> None:
        sent = self.send(self.buffer)
        self.buffer = self.buffer[sent:]

    def handle_read(self) -> None:
        self.received += self.recv(65536)
        if len(self.received) < len(self.message):
            return
        if self.received != self.message:
            self.mismatches += 1
        self.echoed += 1
        self.received = b""
        if self.echoed < ROUNDS:
            self.buffer = self.message
        else:
            self.finish()

    def handle_close(self) -> None:
        self.finish()

    def finish(self) -> None:
        self.close()
        self.peers.discard(self)
        if not self.peers:
            self.server.close()


def main(argv: List[str]) -> None:
    use_poll = "--use-poll" in argv
    server = EchoServer("127.0.0.1")
    peers: Set[EchoClient] = set()
    clients = [EchoClient(server.address, m, peers, server) for m in MESSAGES for _ in range(3)]
    peers.update(clients)
    asyncore.loop(timeout=5.0, use_poll=use_poll)
    print(
        json.dumps(
            {
                "asyncore": asyncore.__name__,
                "file": asyncore.__file__,
                "python": list(sys.version_info[:2]),
                "use_poll": use_poll,
                "accepted": server.accepted,
                "connected": sum(c.saw_connect for c in clients),
                "echoed": sum(c.echoed for c in clients),
                "expected": len(clients) * ROUNDS,
                "mismatches": sum(c.mismatches for c in clients),
                "left_in_map": len(asyncore.socket_map),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
