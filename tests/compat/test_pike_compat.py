"""pike_core.compat.pike (pike-smb2's ``pike.transport`` surface) and the shim that puts
it in place, without a server: loopback sockets only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from pike_core import BackendUnavailableError, Poller, available_backends, default_poller, new_poller
from pike_core import transport as core
from pike_core.compat import pike as compat

USABLE = [b.name for b in available_backends() if b.usable]


@pytest.fixture(params=USABLE)
def poller(request: pytest.FixtureRequest) -> Iterator[Poller]:
    with new_poller(request.param) as p:
        yield p


def _run_until(poller: Poller, done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        poller.poll(0.1)


def test_exports_the_pike_names() -> None:
    for name in compat.__all__:
        assert getattr(compat, name) is not None
    assert compat.BasePoller is Poller
    assert issubclass(compat.Transport, core.Transport)
    assert compat.poller is default_poller()


@pytest.mark.parametrize(
    ("attr", "backend"), [("SelectPoller", "select"), ("PollPoller", "poll"), ("KQueuePoller", "kqueue")]
)
def test_poller_class_is_the_backend_of_that_mechanism(attr: str, backend: str) -> None:
    cls = getattr(compat, attr)
    assert issubclass(cls, compat.BasePoller)
    status = next((b for b in available_backends() if b.name == backend), None)
    if status is not None and status.usable:
        assert status.backend_class is not None
        with cls() as p:
            assert p.name == backend
            assert type(p.backend) is status.backend_class
    else:
        # Importable like the original's, and constructing it says why and what instead.
        with pytest.raises(
            BackendUnavailableError, match=f"{attr} is pike-core's '{backend}' backend"
        ) as info:
            cls()
        assert ", ".join(USABLE) in str(info.value)


def test_assigned_module_poller_is_used_by_transports_and_loop() -> None:
    with new_poller(USABLE[0]) as mine:
        compat.poller = mine
        try:
            assert compat.Transport().poller is mine
            ran: List[bool] = []
            mine.call_soon(ran.append, True)
            compat.loop(timeout=0, count=1)
            assert ran == [True]
        finally:
            del compat.poller
    assert compat.poller is default_poller()
    assert compat.Transport().poller is default_poller()


def test_assigned_module_poller_must_be_a_pike_core_poller() -> None:
    compat.poller = object()  # type: ignore[assignment]
    try:
        with pytest.raises(TypeError, match=r"pike\.transport\.poller must be a pike_core Poller"):
            compat.loop(timeout=0)
    finally:
        del compat.poller


def test_alternate_poller_is_registered_with(poller: Poller) -> None:
    transport = compat.Transport(alternate_poller=poller)
    transport.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    assert poller.connections == {transport.fileno(): transport}
    transport.close()
    assert poller.connections == {}


def test_loop_takes_a_deadline_already_past() -> None:
    # pike's Future.wait hands over ``deadline - now``, which can fall below zero.
    ran: List[bool] = []
    default_poller().call_soon(ran.append, True)
    compat.loop(timeout=-0.001)
    assert ran == [True]


class ConnectionLike(compat.Transport):
    """Closes like pike's ``model.Connection``: never reaches Transport.close for a
    connection that was not established."""

    def __init__(self, poller: Poller) -> None:
        super().__init__(alternate_poller=poller)
        self.errors: List[BaseException] = []
        self.closes = 0

    def handle_error(self) -> None:
        self.errors.append(sys.exc_info()[1])  # type: ignore[arg-type]
        self.close()

    def handle_close(self) -> None:
        self.closes += 1
        self.close()

    def close(self) -> None:
        if self.connected:
            super().close()


def test_refused_connect_is_released_although_close_does_not_chain_up(poller: Poller) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    transport = ConnectionLike(poller)
    transport.create_socket(socket.AF_INET, socket.SOCK_STREAM)
    sock = transport.socket
    assert sock is not None
    try:
        transport.connect(address)
    except ConnectionRefusedError:
        pass  # Refused before connect() returned: released there.
    else:
        _run_until(poller, lambda: bool(transport.errors))
        assert isinstance(transport.errors[0], ConnectionRefusedError)
        assert transport.closes == 1
    assert not transport.connected
    assert transport.closed
    assert poller.connections == {}
    assert sock.fileno() == -1


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX for a connect that fails at once")
def test_immediately_failed_connect_is_released_although_close_does_not_chain_up(poller: Poller) -> None:
    transport = ConnectionLike(poller)
    transport.create_socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock = transport.socket
    assert sock is not None
    with pytest.raises(FileNotFoundError):
        transport.connect(os.path.join(tempfile.mkdtemp(), "nobody-listens"))
    assert transport.closed
    assert poller.connections == {}
    assert sock.fileno() == -1


def _transport_module(**env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != "PIKE_SMB2_SHIM"}
    return subprocess.run(
        [sys.executable, "-c", "import pike.model, pike.transport as t; print(t.__name__, t.__spec__.name)"],
        env=dict(environ, **env),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_shim_maps_pike_transport_unless_switched_off() -> None:
    assert _transport_module() == "pike_core.compat.pike pike_core.compat.pike"
    assert _transport_module(PIKE_SMB2_SHIM="off") == "pike.transport pike.transport"


def test_shim_is_in_place_when_pytest_loads_pikes_plugin(tmp_path: Path) -> None:
    # pike-smb2's pytest11 plugin imports pike.model while pytest loads plugins, through
    # pytest's assertion-rewriting import hook, before any conftest could act.
    (tmp_path / "test_which.py").write_text(
        "import pike.model, pike.transport\n"
        "def test_which():\n"
        "    assert pike.model.Connection.__mro__[1].__module__ == 'pike_core.compat.pike'\n"
        "    assert pike.transport.__name__ == 'pike_core.compat.pike'\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PIKE_SMB2_SHIM"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the loop with nothing to wait for ----------------------------------------------


@pytest.mark.parametrize("backend", USABLE)
def test_loop_with_a_count_returns_when_nothing_is_registered(backend: str) -> None:
    """The original made ``count`` non-blocking passes and returned; a loop that blocks in
    the OS wait must return instead of waiting for ever when nothing can end the wait."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pike_core.compat.pike as t; t.loop(count=3); t.loop(); print('returned')",
        ],
        env={**os.environ, "PIKE_POLLER": backend},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "returned"), done.stderr


def test_loop_with_a_count_runs_what_is_queued_then_returns(poller: Poller) -> None:
    compat.poller = poller
    try:
        ran: List[int] = []
        poller.call_soon(ran.append, 1)
        poller.call_later(0.05, ran.append, 2)
        started = time.monotonic()
        compat.loop(count=5)
        assert ran == [1, 2]
        assert time.monotonic() - started < 5.0
    finally:
        del compat.poller


# --- deferred_writers ---------------------------------------------------------------


def test_deferred_writers_lists_the_transports_awaiting_their_write(poller: Poller) -> None:
    """pike-smb2 code and tests read ``poller.deferred_writers`` (a set of descriptors)."""

    class Writer(compat.Transport):
        writes = 0

        def handle_write(self) -> None:
            self.writes += 1

    a, b = socket.socketpair()
    transport = Writer(alternate_poller=poller)
    transport.set_socket(a)
    assert poller.deferred_writers == frozenset()
    # Watched for writing, but no write was asked for: not a deferred writer (pike kept
    # connecting transports apart too).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        connecting = Writer(alternate_poller=poller)
        connecting.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        connecting.connect(listener.getsockname())
        assert connecting.connecting
        assert poller.deferred_writers == frozenset()
        connecting.close()
    poller.defer_write(transport)
    assert poller.deferred_writers == {transport.fileno()}
    assert transport.fileno() in poller.deferred_writers
    _run_until(poller, lambda: transport.writes == 1)
    assert poller.deferred_writers == frozenset()
    with pytest.raises(AttributeError):
        poller.deferred_writers = frozenset()  # type: ignore[misc]
    transport.close()
    b.close()


# --- interpreter exit ---------------------------------------------------------------

# Registered before pike-core is imported, this exit handler runs after pike-core's: it
# lists the descriptors opened since it started that are still open.
LEFT_OPEN = """
import atexit, os, sys
FOLDER = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
def still_open():
    # Less the descriptor listdir() itself had open.
    return {fd for fd in os.listdir(FOLDER) if os.path.exists(os.path.join(FOLDER, fd))}
before = still_open()
atexit.register(lambda: print("left open:", sorted(still_open() - before, key=int)))
"""


@pytest.mark.skipif(
    not any(os.path.isdir(d) for d in ("/proc/self/fd", "/dev/fd")), reason="lists /proc/self/fd"
)
@pytest.mark.parametrize("backend", USABLE)
def test_the_default_pollers_descriptors_are_closed_at_exit(backend: str) -> None:
    """Its wake-up socket pair was left to the interpreter's teardown: a ResourceWarning
    for each socket, an error under ``-W error``."""
    code = LEFT_OPEN + "import pike_core.compat.pike as t\nt.loop(timeout=0)\nprint(t.poller)\n"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-X", "dev", "-c", code],
        env={**os.environ, "PIKE_POLLER": backend},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"<Poller '{backend}'" in done.stdout
    assert done.stdout.strip().endswith("left open: []"), done.stdout
    assert "ResourceWarning" not in done.stderr
