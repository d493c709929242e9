"""The asyncio event loop on a :class:`~pike_asyncio.PikeSelector`, its policy, and ``run``.

The loop is asyncio's own ``SelectorEventLoop``: its transports, streams, servers,
``sock_*`` methods, datagram endpoints and TLS are asyncio's, unchanged; only the
selector under them is pike-core's.  On Windows that gives ``add_reader`` and
``add_writer`` (which the default proactor loop lacks) on IOCP readiness, with no
helper thread and no 512-socket limit.

What a readiness loop cannot do on Windows is wait on pipe handles: asyncio runs
subprocesses and pipe transports there through the proactor only.  Those methods raise
``NotImplementedError`` naming the way out, rather than asyncio's bare one.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Any, Awaitable, Callable, Coroutine, NoReturn, Optional, TypeVar, Union

from pike_core import Backend

from .selector import PikeSelector

_T = TypeVar("_T")

#: Why pipes and subprocesses are refused on Windows, and what to use instead.
PIPES_ON_WINDOWS: str = (
    "asyncio runs pipes and subprocesses on Windows through the proactor loop only "
    "(completions on pipe handles); pike-asyncio's loop waits for socket readiness. "
    "Run that part with subprocess in loop.run_in_executor(), or in a thread with its own "
    "asyncio.ProactorEventLoop; see 'What does not work on Windows' in pike-asyncio's README"
)


class PikeEventLoop(asyncio.SelectorEventLoop):
    """asyncio's selector event loop, waiting on a pike-core backend.

    :param backend: a :class:`~pike_core.Backend` (the loop owns and closes it), the name
        of an installed backend, or None for the one ``PIKE_POLLER`` or priority chooses.
    :raises BackendError: ``backend`` names nothing usable here; the message says why.
    """

    def __init__(self, backend: Union[Backend, str, None] = None) -> None:
        try:
            selector = PikeSelector(backend)
        except BaseException:
            # Nothing was opened; without this, asyncio's __del__ would meet a loop that
            # never ran its __init__ and print an AttributeError over the real error.
            self._closed = True
            raise
        super().__init__(selector)
        self._pike_selector = selector
        self._wakeup_fd_set = False
        if sys.platform == "win32" and threading.current_thread() is threading.main_thread():
            # A Ctrl-C must end a wait that may last a day: on Windows no signal
            # interrupts the OS wait, so the C-level handler writes to the self-pipe the
            # selector watches (the proactor loop does the same with its own).
            signal.set_wakeup_fd(self._csock.fileno())  # type: ignore[attr-defined]
            self._wakeup_fd_set = True

    @property
    def backend(self) -> Backend:
        """The pike-core backend the loop waits on (``loop.backend.name``: ``"iocp"``...)."""
        return self._pike_selector.backend

    def close(self) -> None:
        if self._wakeup_fd_set and not self.is_closed():
            self._wakeup_fd_set = False
            if threading.current_thread() is threading.main_thread():
                signal.set_wakeup_fd(-1)
        super().close()

    def __repr__(self) -> str:
        state = "closed" if self.is_closed() else ("running" if self.is_running() else "idle")
        return f"<{type(self).__name__} on {self._pike_selector.backend.name!r}, {state}>"

    if sys.platform == "win32":

        def _no_pipes(self, what: str) -> NoReturn:
            raise NotImplementedError(f"{what} is not available on {self!r}: {PIPES_ON_WINDOWS}")

        async def subprocess_exec(self, *args: Any, **kwargs: Any) -> Any:
            self._no_pipes("subprocess_exec (asyncio.create_subprocess_exec)")

        async def subprocess_shell(self, *args: Any, **kwargs: Any) -> Any:
            self._no_pipes("subprocess_shell (asyncio.create_subprocess_shell)")

        async def connect_read_pipe(self, *args: Any, **kwargs: Any) -> Any:
            self._no_pipes("connect_read_pipe")

        async def connect_write_pipe(self, *args: Any, **kwargs: Any) -> Any:
            self._no_pipes("connect_write_pipe")


def new_event_loop(backend: Union[Backend, str, None] = None) -> PikeEventLoop:
    """A new :class:`PikeEventLoop` (see there for ``backend``)."""
    return PikeEventLoop(backend)


class PikeEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """The platform's default policy, making :class:`PikeEventLoop` loops::

        asyncio.set_event_loop_policy(pike_asyncio.PikeEventLoopPolicy())

    :param backend: the name of the backend every new loop waits on; None: the one
        ``PIKE_POLLER`` or priority chooses, anew for each loop.
    """

    def __init__(self, backend: Optional[str] = None) -> None:
        super().__init__()
        self._backend = backend

    def new_event_loop(self) -> PikeEventLoop:
        return PikeEventLoop(self._backend)


def run(
    main: Coroutine[Any, Any, _T],
    *,
    backend: Optional[str] = None,
    debug: Optional[bool] = None,
) -> _T:
    """``asyncio.run(main)`` on a new :class:`PikeEventLoop`.

    :param backend: the backend's name; None: ``PIKE_POLLER`` or priority decides.
    :param debug: asyncio's debug mode (None: asyncio's default).
    :returns: what ``main`` returns.
    :raises RuntimeError: called from a running event loop (as ``asyncio.run``).
    :raises BackendError: ``backend`` names nothing usable here; the message says why.
    """
    if asyncio._get_running_loop() is not None:
        # Before a loop is made: Python 3.11's Runner would make one, then refuse.
        raise RuntimeError("pike_asyncio.run() cannot be called from a running event loop")
    factory: Callable[[], PikeEventLoop] = lambda: PikeEventLoop(backend)  # noqa: E731
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=factory)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
            return runner.run(main)
    return _run_with_policy(main, backend, debug)


def _run_with_policy(main: Awaitable[_T], backend: Optional[str], debug: Optional[bool]) -> _T:
    """Python 3.9 and 3.10: ``asyncio.run`` has no loop factory; it takes its loop from
    the policy, so ours is the policy for the length of the call."""
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(PikeEventLoopPolicy(backend))
    try:
        return asyncio.run(main, debug=debug)  # type: ignore[arg-type]
    finally:
        asyncio.set_event_loop_policy(previous)
