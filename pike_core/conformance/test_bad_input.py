"""Bad input to every public call: a clear exception naming what is wrong, and the
poller and every other transport go on as if nothing happened."""

from __future__ import annotations

import socket
from typing import Any, Callable, Iterator, List, Tuple, Type

import pytest

from pike_core import Poller, PollerClosedError, RegistrationError, Transport

from .support import Recorder, connected_pair, run_until

Case = Tuple[str, Callable[[], object], Type[BaseException], str]


class World:
    """A poller with a live transport under test, a bystander, an idle and a closed one."""

    def __init__(self, poller: Poller) -> None:
        self.poller = poller
        a, self.peer = connected_pair()
        self.live = Recorder(poller, a)
        c, self.bystander_peer = connected_pair()
        self.bystander = Recorder(poller, c)
        self.idle = Transport(alternate_poller=poller)
        e, self.closed_peer = connected_pair()
        self.closed = Recorder(poller, e)
        self.closed.close()

    def still_serving(self) -> None:
        """Both open transports still receive, and the live one still sends."""
        for transport, peer in ((self.live, self.peer), (self.bystander, self.bystander_peer)):
            assert isinstance(transport, Recorder)
            before = len(transport.received)
            peer.send(b"still here")
            run_until(
                self.poller,
                lambda t=transport, n=before: len(t.received) >= n + 10,  # type: ignore[misc]
                what=f"{transport!r} to go on receiving",
            )
            assert not transport.closed
        assert self.live.send(b"out") == 3

    def close(self) -> None:
        for s in (self.peer, self.bystander_peer, self.closed_peer):
            s.close()


@pytest.fixture
def world(pike_poller: Poller) -> Iterator[World]:
    w = World(pike_poller)
    try:
        yield w
    finally:
        w.close()


def _cases(w: World) -> List[Case]:
    p, live, idle, dead = w.poller, w.live, w.idle, w.closed

    def fresh() -> Transport:
        # Made at the call: a socket never connected reads as hung up once polled.
        t = Transport(alternate_poller=p)
        t.create_socket()
        return t

    not_a_transport: Any = object()
    cases: List[Case] = [
        # Poller calls with something that is not a transport, or not registered here.
        ("register(object)", lambda: p.register(not_a_transport), TypeError, "needs a pike_core Transport"),
        ("register(None)", lambda: p.register(None), TypeError, "needs a pike_core Transport"),  # type: ignore[arg-type]
        ("unregister(object)", lambda: p.unregister(not_a_transport), TypeError, "Transport"),
        ("defer_write(object)", lambda: p.defer_write(not_a_transport), TypeError, "Transport"),
        ("is_registered(int)", lambda: p.is_registered(1), TypeError, "Transport"),  # type: ignore[arg-type]
        ("register(idle)", lambda: p.register(idle), RegistrationError, "no open socket"),
        ("unregister(idle)", lambda: p.unregister(idle), RegistrationError, "not registered"),
        ("defer_write(idle)", lambda: p.defer_write(idle), RegistrationError, "not registered"),
        ("defer_write(closed)", lambda: p.defer_write(dead), RegistrationError, "not registered"),
        ("unregister(closed)", lambda: p.unregister(dead), RegistrationError, "not registered"),
        # Numbers of the wrong kind or sign.
        ("poll(-1)", lambda: p.poll(-1), ValueError, ">= 0"),
        ("poll(nan)", lambda: p.poll(float("nan")), ValueError, ">= 0"),
        ("poll('1')", lambda: p.poll("1"), TypeError, "number of seconds"),  # type: ignore[arg-type]
        ("loop(timeout=-1)", lambda: p.loop(timeout=-1), ValueError, ">= 0"),
        ("loop(count=1.5)", lambda: p.loop(count=1.5), TypeError, "int"),  # type: ignore[arg-type]
        ("call_later('1')", lambda: p.call_later("1", print), TypeError, "number"),  # type: ignore[arg-type]
        ("call_later(inf)", lambda: p.call_later(float("inf"), print), ValueError, "finite"),
        ("call_soon(None)", lambda: p.call_soon(None), TypeError, "callable"),  # type: ignore[arg-type]
        ("call_soon_threadsafe(1)", lambda: p.call_soon_threadsafe(1), TypeError, "callable"),  # type: ignore[arg-type]
        # Transport data calls with bad arguments.
        ("recv(-1)", lambda: live.recv(-1), ValueError, r"recv\(\) on <Recorder.*>= 0"),
        ("recv('10')", lambda: live.recv("10"), TypeError, r"recv\(\) on <Recorder.*int"),  # type: ignore[arg-type]
        ("recv(1.5)", lambda: live.recv(1.5), TypeError, "int"),  # type: ignore[arg-type]
        ("send(str)", lambda: live.send("text"), TypeError, "bytes-like"),  # type: ignore[arg-type]
        ("write(str)", lambda: live.write("text"), TypeError, r"write\(\) on <Recorder.*bytes-like.*str"),  # type: ignore[arg-type]
        ("write(None)", lambda: live.write(None), TypeError, "bytes-like"),  # type: ignore[arg-type]
        ("shutdown(99)", lambda: live.shutdown(99), OSError, "nvalid"),
        ("set_socket(int)", lambda: live.set_socket(5), TypeError, "socket.socket"),  # type: ignore[arg-type]
        ("create_socket(live)", live.create_socket, RegistrationError, "already has a socket"),
        ("Transport(poller=1)", lambda: Transport(alternate_poller=1), TypeError, "Poller"),  # type: ignore[arg-type]
        ("connect(None)", lambda: fresh().connect(None), TypeError, "address"),
        ("connect(bad port)", lambda: fresh().connect(("127.0.0.1", 1 << 20)), OverflowError, "port"),
    ]
    # Every socket call on a transport that was closed, or never given a socket.
    for name, target in (("closed", dead), ("idle", idle)):
        for call, args in (
            ("recv", (10,)),
            ("send", (b"x",)),
            ("write", (b"x",)),
            ("shutdown", ()),
            ("connect", (("127.0.0.1", 9),)),
            ("bind", (("127.0.0.1", 0),)),
            ("listen", ()),
            ("accept", ()),
        ):
            method = getattr(target, call)
            cases.append(
                (
                    f"{name}.{call}",
                    lambda m=method, a=args: m(*a),  # type: ignore[misc]
                    OSError,
                    rf"{call}\(\) on <Transport|{call}\(\) on <Recorder",
                )
            )
    return cases


def test_every_bad_call_is_a_clear_error_and_nothing_else_breaks(world: World) -> None:
    cases = _cases(world)
    for name, call, kind, pattern in cases:
        with pytest.raises(kind, match=pattern):
            call()
        # After each one, not only at the end: a broken state shows at its cause.
        world.poller.poll(0)
        assert not world.live.closed, f"{name} closed the transport under test"
    world.still_serving()
    assert world.live.calls.count("error") == 0
    assert world.bystander.calls.count("error") == 0


def test_huge_recv_size_returns_what_is_there(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Transport(alternate_poller=pike_poller, sock=a)
    b.send(b"small")
    got = bytearray()

    def read_huge() -> bool:
        # A size far beyond memory: the buffer asked of the OS is bounded by MAX_RECV.
        got.extend(t.recv(1 << 62))
        return bytes(got) == b"small"

    run_until(pike_poller, read_huge, what="the bytes through recv(2**62)")
    t.close()
    b.close()


def test_connect_with_bad_address_leaves_transport_usable(pike_poller: Poller) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = Recorder(pike_poller)
    client.create_socket()
    with pytest.raises(TypeError):
        client.connect("not an address")
    assert not client.connecting
    assert not client.closed
    client.connect(server.getsockname())
    run_until(pike_poller, lambda: client.connected, what="the retry with a good address")
    assert client.calls == ["connect"]
    client.close()
    server.close()


def test_closed_poller_refuses_with_its_own_error(pike_poller: Poller) -> None:
    a, b = connected_pair()
    t = Recorder(pike_poller, a)
    pike_poller.close()
    for call in (
        lambda: pike_poller.poll(0),
        lambda: pike_poller.loop(count=1),
        lambda: pike_poller.call_later(0, print),
        lambda: pike_poller.call_soon(print),
        lambda: pike_poller.register(t),
    ):
        with pytest.raises(PollerClosedError):
            call()
    # Other threads may race a close: their calls are no-ops, never errors.
    pike_poller.call_soon_threadsafe(print)
    b.close()
