"""PikeSelector: the ``selectors.BaseSelector`` interface over any pike-core backend.

Design notes
------------
A :class:`~pike_core.Backend` already is a selector in all but name: it registers,
modifies and unregisters descriptors and waits for level-triggered readiness.  What the
``selectors`` contract adds is bookkeeping, kept here once for every backend, ours or a
third party's: a :class:`selectors.SelectorKey` per descriptor, the lookup of a file
object by its descriptor (or, once it is closed, by identity), and the translation of
event bits.

The backend contract differs from ``selectors`` in three places, each handled here:

* a backend never gets an empty mask, so a key modified to ``events=0`` stays in the map
  and leaves the backend (``selectors.PollSelector`` would register it with 0);
* a backend reports ``ERROR``, ``HANGUP`` and ``INVALID`` unasked; like CPython's poll
  and epoll selectors, they are reported as both ``EVENT_READ`` and ``EVENT_WRITE`` (as
  far as the key asked for them), so the callback that reads or writes meets the error;
* a backend's wait may return early with nothing (a scan falling due, a wake-up), where
  ``select(timeout)`` blocks until an event or the timeout: the wait is repeated until
  the deadline.

No waker is needed: asyncio registers its own self-pipe through the selector, so another
thread's ``call_soon_threadsafe`` wakes the backend's wait like any readable socket.

Capacity: a backend refuses a descriptor it cannot watch (select beyond ``FD_SETSIZE``)
with :class:`~pike_core.CapacityError` at :meth:`PikeSelector.register`, where asyncio's
``add_reader`` fails for that socket alone, instead of a later ``select()`` failing for
all of them.
"""

from __future__ import annotations

import math
import selectors
from typing import TYPE_CHECKING, Any, Dict, Final, Iterator, List, Mapping, Optional, Tuple, Union

from pike_core import MAX_WAIT, Backend, CapacityError, events
from pike_core.timers import clock

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

EVENT_READ: Final = selectors.EVENT_READ
EVENT_WRITE: Final = selectors.EVENT_WRITE
_EVENTS: Final = EVENT_READ | EVENT_WRITE

#: Selector events -> the backend's bits, indexed by the selector mask (0..3).
_TO_BACKEND: Final = (0, events.READ, events.WRITE, events.READ | events.WRITE)
#: Backend bits that make a key readable, or writable (unasked conditions make both).
_READ_SIDE: Final = events.READ | events.PRIORITY | events.UNASKED
_WRITE_SIDE: Final = events.WRITE | events.UNASKED


def _fd_of(fileobj: FileDescriptorLike) -> int:
    """The descriptor of ``fileobj`` (an int, or an object with ``fileno()``).

    :raises ValueError: not a file object, or a negative (closed) descriptor.
    """
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(
                f"invalid file object: {fileobj!r} (an int or an object with fileno())"
            ) from None
    if fd < 0:
        raise ValueError(f"invalid file descriptor {fd} (of {fileobj!r}): closed?")
    return fd


class _KeyMap(Mapping["FileDescriptorLike", selectors.SelectorKey]):
    """The read-only view :meth:`PikeSelector.get_map` returns: file object -> key."""

    __slots__ = ("_selector",)

    def __init__(self, selector: PikeSelector) -> None:
        self._selector = selector

    def __len__(self) -> int:
        return len(self._selector._keys)

    def __getitem__(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        try:
            return self._selector._keys[self._selector._lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None

    def __iter__(self) -> Iterator[int]:
        return iter(self._selector._keys)


class PikeSelector(selectors.BaseSelector):
    """A selector that waits on a pike-core backend.

    Not thread-safe, as no selector is: every method belongs to the thread that selects.

    :param backend: a :class:`~pike_core.Backend` (this selector owns and closes it), the
        name of an installed backend, or None for the one ``PIKE_POLLER`` or priority
        chooses (see ``python -m pike_asyncio``).
    :raises BackendError: ``backend`` names nothing usable here; the message says why.
    :raises TypeError: ``backend`` is neither a Backend, a name nor None.
    :raises OSError: the backend could not open its OS object.
    """

    def __init__(self, backend: Union[Backend, str, None] = None) -> None:
        if backend is None or isinstance(backend, str):
            from pike_core.discovery import registry  # noqa: PLC0415 - lazy: discovery loads plugins

            backend = registry.new_backend(backend)
        elif not isinstance(backend, Backend):
            raise TypeError(
                f"PikeSelector(backend) needs a pike_core.Backend, a backend name or None, got {backend!r}"
            )
        self._backend = backend
        self._keys: Dict[int, selectors.SelectorKey] = {}
        self._map = _KeyMap(self)
        self._closed = False

    @property
    def backend(self) -> Backend:
        """The pike-core backend this selector waits on."""
        return self._backend

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    def _lookup(self, fileobj: FileDescriptorLike) -> int:
        """The descriptor ``fileobj`` is registered under: by ``fileno()``, or, for an
        object closed since (``fileno()`` is -1), by identity among the keys."""
        try:
            return _fd_of(fileobj)
        except ValueError:
            for key in self._keys.values():
                if key.fileobj is fileobj:
                    return key.fd
            raise

    def register(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        """Watch ``fileobj`` for ``events``.

        :param events: ``EVENT_READ``, ``EVENT_WRITE`` or both.
        :returns: the new key.
        :raises ValueError: ``events`` is empty or has other bits; ``fileobj`` has no
            valid descriptor.
        :raises KeyError: ``fileobj`` (or its descriptor) is registered already.
        :raises CapacityError: the backend cannot watch this descriptor (a
            ``ValueError``; the message names the backend to use instead).
        :raises OSError: the OS refused.
        :raises RuntimeError: the selector is closed.
        """
        self._check_open()
        if not events or events & ~_EVENTS:
            raise ValueError(f"invalid events: {events!r} (EVENT_READ, EVENT_WRITE or both)")
        fd = _fd_of(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (descriptor {fd}) is already registered")
        try:
            self._backend.admit(fd)
            self._backend.register(fd, _TO_BACKEND[events])
        except CapacityError as exc:
            raise CapacityError(fileobj, f"cannot register {fileobj!r}: {exc}") from None
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """Stop watching ``fileobj``; it may have been closed already.

        :returns: its key.
        :raises KeyError: ``fileobj`` is not registered.
        :raises RuntimeError: the selector is closed.
        """
        self._check_open()
        try:
            key = self._keys.pop(self._lookup(fileobj))
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if key.events:
            self._backend.unregister(key.fd)
        return key

    def modify(self, fileobj: FileDescriptorLike, events: int, data: Any = None) -> selectors.SelectorKey:
        """Change the events or data of a registered ``fileobj``.  With ``events=0`` the
        key stays registered and nothing is watched until it is modified again.

        :returns: the key, new if anything changed.
        :raises ValueError: ``events`` has bits other than ``EVENT_READ | EVENT_WRITE``.
        :raises KeyError: ``fileobj`` is not registered.
        :raises OSError: the OS refused (the descriptor was closed, most likely); the
            key is then unregistered, as by CPython's selectors, so none of its events
            can arrive for a descriptor nobody watches.
        :raises RuntimeError: the selector is closed.
        """
        self._check_open()
        if events & ~_EVENTS:
            raise ValueError(f"invalid events: {events!r} (0, EVENT_READ, EVENT_WRITE or both)")
        try:
            key = self._keys[self._lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        if events == key.events:
            if data is key.data:
                return key
        else:
            self._change(key, events)
        new = key._replace(events=events, data=data)
        self._keys[key.fd] = new
        return new

    def _change(self, key: selectors.SelectorKey, events: int) -> None:
        """Bring the backend from ``key.events`` to ``events``."""
        backend, fd = self._backend, key.fd
        try:
            if not key.events:
                backend.admit(fd)
                backend.register(fd, _TO_BACKEND[events])
            elif not events:
                backend.unregister(fd)
            else:
                backend.modify(fd, _TO_BACKEND[events])
        except BaseException:
            del self._keys[fd]
            if key.events:
                backend.unregister(fd)
            raise

    def select(self, timeout: Optional[float] = None) -> List[Tuple[selectors.SelectorKey, int]]:
        """Wait until a registered file object is ready or ``timeout`` seconds pass.

        :param timeout: seconds (0 or less: do not block), or None to wait for an event.
        :returns: ``(key, events)`` pairs, at most one per key, ``events`` being the
            ready subset of ``key.events``; empty when the timeout passed.
        :raises OSError: the backend's wait failed.
        :raises RuntimeError: the selector is closed.
        """
        self._check_open()
        deadline: Optional[float] = None
        wait: Optional[float] = None
        if timeout is not None and not math.isinf(timeout):
            wait = min(timeout, MAX_WAIT) if timeout > 0 else 0.0
            deadline = clock() + wait
        keys = self._keys
        backend = self._backend
        while True:
            ready: List[Tuple[selectors.SelectorKey, int]] = []
            for fd, mask in backend.wait(wait):
                key = keys.get(fd)
                if key is None:
                    continue
                ready_events = key.events & (
                    (EVENT_READ if mask & _READ_SIDE else 0) | (EVENT_WRITE if mask & _WRITE_SIDE else 0)
                )
                if ready_events:
                    ready.append((key, ready_events))
            if ready or wait == 0.0:
                return ready
            if deadline is not None:
                wait = deadline - clock()
                if wait <= 0.0:
                    return ready

    def close(self) -> None:
        """Forget every key and close the backend.  Harmless when repeated."""
        if self._closed:
            return
        self._closed = True
        self._keys.clear()
        self._backend.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        """The key of ``fileobj``.

        :raises KeyError: ``fileobj`` is not registered.
        :raises RuntimeError: the selector is closed.
        """
        self._check_open()
        return self._map[fileobj]

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        """A read-only, live view: file object (or descriptor) -> key."""
        return self._map

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._keys)} registered"
        return f"<{type(self).__name__} on {self._backend.name!r}, {state}>"
