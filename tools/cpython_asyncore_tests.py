"""CPython's own asyncore, asynchat and smtpd tests, run on the asyncore drop-in.

Python 3.11 is the last Python with ``asyncore``, ``asynchat`` and ``smtpd``, and its
``test`` package holds their tests.  This runs them from there, unmodified, through
CPython's own test runner (``test.libregrtest``, with ``--fail-env-changed``), after
putting pike-asyncore-shim's finder first on ``sys.meta_path``: ``import asyncore``, in
the tests and in the stdlib's ``asynchat`` and ``smtpd``, then gives
:mod:`pike_core.compat.asyncore` (on 3.11 the shim does not do it by itself).  One run per
backend, chosen with ``PIKE_POLLER``::

    python3.11 tools/cpython_asyncore_tests.py [BACKEND ...]
    python3.11 tools/cpython_asyncore_tests.py --missing    # the test modules it lacks

with pike-core, its backends and pike-asyncore-shim installed in that interpreter.
Without names it runs every usable backend that declares what the tests expect of
``select()`` and ``poll()``: out-of-band data (``PRIORITY``) and hang-ups (the
``hangup`` capability).  ``dev.py test`` runs it where a Python 3.11 is found.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import List, Optional, Sequence

#: The test modules, from the interpreter's ``test`` package.
TESTS = ("test_asyncore", "test_asynchat", "test_smtpd")
#: The modules the finder must answer for: ``asyncore`` itself, and the stdlib modules
#: that import it, freshly imported so that theirs is the drop-in.
FRESH = ("asyncore", "asynchat", "smtpd")


def missing_tests() -> List[str]:
    """The test modules this interpreter does not have."""
    return [name for name in TESTS if importlib.util.find_spec(f"test.{name}") is None]


def backends_to_run() -> List[str]:
    """Every usable backend that declares ``PRIORITY`` and the ``hangup`` capability."""
    from pike_core import available_backends, events  # noqa: PLC0415 - in the child only

    return [
        status.name
        for status in available_backends()
        if status.usable
        and status.backend_class is not None
        and status.backend_class.supported & events.PRIORITY
        and "hangup" in status.capabilities
    ]


def run_in_this_process() -> None:
    """Run the tests here with the drop-in as ``asyncore``; exits with regrtest's status."""
    import pike_asyncore_shim  # noqa: PLC0415 - in the child only

    for name in FRESH:
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, pike_asyncore_shim.AsyncoreFinder())
    import asyncore  # noqa: PLC0415

    if asyncore.__name__ != pike_asyncore_shim.TARGET:
        raise SystemExit(f"import asyncore gave {asyncore!r}, not {pike_asyncore_shim.TARGET}")
    from pike_core import choose_backend  # noqa: PLC0415

    print(f"asyncore is {asyncore.__name__}, on backend {choose_backend().backend.name}", flush=True)
    sys.argv[1:] = ["--fail-env-changed", *TESTS]
    importlib.import_module("test.libregrtest.main").main()


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--here"]:
        run_in_this_process()
        return 0
    missing = missing_tests()
    if args == ["--missing"]:
        print(" ".join(missing))
        return 0
    if missing:
        print(f"this Python ({sys.version.split()[0]}) has no {', '.join(missing)} in its test package")
        return 1
    status = 0
    for backend in args or backends_to_run():
        print(
            f"\n--- CPython's {', '.join(TESTS)} on the asyncore drop-in, PIKE_POLLER={backend}", flush=True
        )
        env = {**os.environ, "PIKE_POLLER": backend}
        status = subprocess.call([sys.executable, __file__, "--here"], env=env) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
