"""pike-asyncio: asyncio's event loop on any pike-core backend.

:class:`PikeSelector` is a :class:`selectors.BaseSelector` over a pike-core backend;
:class:`PikeEventLoop` is asyncio's ``SelectorEventLoop`` on one.  On Windows that makes
``add_reader``/``add_writer`` (pyzmq, tornado...) work on IOCP readiness, without a
helper thread and without select's 512-socket limit::

    import pike_asyncio

    pike_asyncio.run(main())  # or: asyncio.set_event_loop_policy(pike_asyncio.PikeEventLoopPolicy())

``python -m pike_asyncio`` says which backend the loop would use, and why.
"""

from __future__ import annotations

from .loop import PIPES_ON_WINDOWS, PikeEventLoop, PikeEventLoopPolicy, new_event_loop, run
from .selector import PikeSelector

__all__ = [
    "PIPES_ON_WINDOWS",
    "PikeEventLoop",
    "PikeEventLoopPolicy",
    "PikeSelector",
    "new_event_loop",
    "run",
]
