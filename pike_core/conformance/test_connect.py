"""Connecting: success only after SO_ERROR says so; failures never look connected."""

from __future__ import annotations

import contextlib
import socket
import sys

import pytest

from pike_core import Poller, Transport

from .support import Listener, Recorder, free_port, run_until


def test_connect_success_calls_handle_connect_once(pike_poller: Poller) -> None:
    server = Listener(pike_poller, Recorder)
    client = Recorder(pike_poller)
    client.create_socket()
    client.connect(server.addr)
    run_until(pike_poller, lambda: client.calls and server.accepted, what="connect and accept")
    for _ in range(5):
        pike_poller.poll(0.01)
    assert client.calls == ["connect"]
    assert client.connected
    assert not client.connecting
    # Connected means usable: data flows at once.
    assert client.send(b"ping") == 4
    peer = server.accepted[0]
    assert isinstance(peer, Recorder)
    run_until(pike_poller, lambda: bytes(peer.received) == b"ping", what="data after connect")


class KeepOpenOnError(Recorder):
    """Records errors without closing, so the core's own follow-up is visible."""

    def handle_error(self) -> None:
        self.calls.append("error")
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]


def test_connect_refused_is_never_connected(pike_poller: Poller) -> None:
    client = KeepOpenOnError(pike_poller)
    client.create_socket()
    port = free_port()
    try:
        client.connect(("127.0.0.1", port))
    except ConnectionRefusedError:
        # Refused before connect() returned: reported by the exception itself.
        pass
    else:
        run_until(pike_poller, lambda: client.closed, what="the refused connect to be reported")
        assert client.calls == ["error", "close"]
        assert isinstance(client.errors[0], ConnectionRefusedError)
    assert "connect" not in client.calls
    assert not client.connected
    assert client.closed
    assert not pike_poller.is_registered(client)
    assert pike_poller.transports() == []


def test_failed_connect_with_default_handlers_closes_and_unregisters(pike_poller: Poller) -> None:
    closes = []

    class Client(Transport):
        def handle_connect(self) -> None:
            raise AssertionError("a refused connect was reported as connected")

        def handle_close(self) -> None:
            closes.append(True)
            super().handle_close()

    client = Client(alternate_poller=pike_poller)
    client.create_socket()
    with contextlib.suppress(ConnectionRefusedError):
        client.connect(("127.0.0.1", free_port()))
    run_until(pike_poller, lambda: client.closed, what="the refused connect to close the transport")
    assert len(closes) <= 1
    assert pike_poller.transports() == []


def test_connect_without_socket_is_a_clear_error(pike_poller: Poller) -> None:
    client = Recorder(pike_poller)
    with pytest.raises(OSError, match="create_socket"):
        client.connect(("127.0.0.1", 1))


def test_unix_connect_to_missing_path_raises_and_closes(pike_poller: Poller, tmp_path: object) -> None:
    if not hasattr(socket, "AF_UNIX"):
        pytest.skip("AF_UNIX sockets do not exist on this platform")
    client = Recorder(pike_poller)
    client.create_socket(socket.AF_UNIX)
    with pytest.raises(FileNotFoundError):
        client.connect(f"{tmp_path}/no-such-socket")
    assert client.closed
    assert pike_poller.transports() == []
