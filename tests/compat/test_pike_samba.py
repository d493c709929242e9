"""Unmodified pike-smb2 (from PyPI) over pike-core, against a real Samba smbd on loopback.

pike-smb2 and ``compat/pike-smb2-shim`` must be installed: the shim's import hook makes
``pike.transport`` pike-core's :mod:`pike_core.compat.pike`.  The tests start their own
smbd through ``tools/samba.py`` (one per module where the server survives the test), which
needs root; they are skipped only when not root or when Samba cannot be installed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pike.model  # type: ignore[import-untyped]
import pike.smb2  # type: ignore[import-untyped]
import pike.transport  # type: ignore[import-untyped]
import pytest

from pike_core import Poller, available_backends, set_default_poller
from pike_core.compat import pike as compat_pike

ROOT = Path(__file__).resolve().parents[2]
# tools/ is a folder of scripts, not an installed package: reach it from the clone.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from tools import samba  # noqa: E402

PIKE_SMB2_VERSION = "0.4.6"
CACHE = ROOT / ".cache"
MIB = 1 << 20
SHARE_ALL = pike.smb2.FILE_SHARE_READ | pike.smb2.FILE_SHARE_WRITE | pike.smb2.FILE_SHARE_DELETE
LINUX_POLLERS = ["select", "poll", "epoll"]


def _require_samba() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: smbd switches to the share user's uid for each connection")
    try:
        samba.ensure_samba()
    except (OSError, subprocess.CalledProcessError, samba.SambaError) as exc:
        pytest.skip(f"Samba's smbd cannot be installed here: {exc}")


@contextlib.contextmanager
def _server() -> Iterator[samba.SambaServer]:
    _require_samba()
    # Not tmp_path: smbd's share user must traverse every parent folder, and pytest's
    # base folder is private to root.
    workdir = Path(tempfile.mkdtemp(prefix="pike-compat-", dir="/tmp"))
    try:
        with samba.SambaServer(workdir) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def server() -> Iterator[samba.SambaServer]:
    with _server() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _pike_over_pike_core() -> None:
    assert pike.transport is compat_pike, (
        "pike.transport is pike-smb2's own module: install the shim "
        "(pip install -e compat/pike-smb2-shim) and leave PIKE_SMB2_SHIM unset"
    )


@pytest.fixture(params=LINUX_POLLERS)
def pike_poller(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Poller]:
    """The module-level ``pike.transport.poller``, chosen anew through ``PIKE_POLLER``."""
    name: str = request.param
    if not next(b for b in available_backends() if b.name == name).usable:
        pytest.skip(f"the {name} backend cannot run on this machine")
    monkeypatch.setenv("PIKE_POLLER", name)
    set_default_poller(None)
    chosen: Poller = pike.transport.poller
    assert chosen.name == name
    yield chosen
    chosen.close()
    set_default_poller(None)


def _session(server: samba.SambaServer) -> Tuple[Any, Any, Any]:
    """A connection, a channel (after negotiate and session setup) and a tree."""
    conn = pike.model.Client().connect(server.host, server.port)
    conn.negotiate()
    chan = conn.session_setup(server.creds)
    return conn, chan, chan.tree_connect(server.share)


def test_read_back_one_mib_byte_exact(server: samba.SambaServer, pike_poller: Poller) -> None:
    conn, chan, tree = _session(server)
    assert conn.negotiate_response.dialect_revision == pike.smb2.DIALECT_SMB3_1_1
    assert isinstance(conn, compat_pike.Transport)
    assert conn.poller is pike_poller
    data = os.urandom(MIB)
    name = f"one-mib-{pike_poller.name}.bin"
    handle = chan.create(
        tree,
        name,
        access=pike.smb2.FILE_READ_DATA | pike.smb2.FILE_WRITE_DATA,
        share=SHARE_ALL,
        disposition=pike.smb2.FILE_SUPERSEDE,
    ).result()
    chunk = 64 * 1024
    for offset in range(0, MIB, chunk):
        assert chan.write(handle, offset, data[offset : offset + chunk]) == chunk
    back = bytearray()
    while len(back) < MIB:
        back += bytes(chan.read(handle, chunk, len(back)))
    assert back == data
    assert (server.share_path / name).read_bytes() == data
    chan.close(handle)
    chan.tree_disconnect(tree)
    chan.logoff()
    conn.close()
    assert pike_poller.transports() == []


def test_idle_loop_blocks_instead_of_spinning(server: samba.SambaServer) -> None:
    conn, chan, tree = _session(server)
    cpu = time.process_time()
    pike.model.loop(timeout=0.3)
    # The original polled with timeout 0 in a loop: about 0.3 s of CPU here.
    assert time.process_time() - cpu < 0.1
    chan.tree_disconnect(tree)
    chan.logoff()
    conn.close()


def test_server_killed_fails_pending_request_at_once() -> None:
    with _server() as server:
        conn, chan, tree = _session(server)
        root = chan.create(
            tree,
            "",
            access=pike.smb2.FILE_LIST_DIRECTORY,
            options=pike.smb2.FILE_DIRECTORY_FILE,
            share=SHARE_ALL,
        ).result()
        # Pending until something changes in the share: nothing will.
        notify = chan.change_notify(root)
        with pytest.raises(pike.model.TimeoutError):
            notify.wait(0.2)
        server.kill()
        killed = time.monotonic()
        # pike reports a lost connection as EOFError (Connection.close's own error).
        with pytest.raises((EOFError, ConnectionError)):
            notify.result(10)
        assert time.monotonic() - killed < 1.0
        assert isinstance(conn.error, (EOFError, ConnectionError))
        assert not conn.connected
        assert conn.closed
        assert not pike.transport.poller.is_registered(conn)
        # Later requests fail at once too, with the same error.
        with pytest.raises(type(conn.error)):
            chan.echo()


def test_refused_connect_raises_at_once_and_leaves_nothing_registered() -> None:
    port = samba.find_free_port()
    client = pike.model.Client()
    start = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        client.connect(samba.LOOPBACK, port)
    assert time.monotonic() - start < 1.0
    assert client._connections == []
    assert pike.transport.poller.connections == {}
    assert pike.transport.poller.transports() == []


def _pike_sdist() -> Path:
    """pike-smb2's source distribution, downloaded once into the clone's .cache."""
    unpacked = CACHE / f"pike_smb2-{PIKE_SMB2_VERSION}"
    if (unpacked / "tests").is_dir():
        return unpacked
    CACHE.mkdir(exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix="pike-sdist-", dir=CACHE))
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-binary",
                ":all:",
                "--no-deps",
                f"pike-smb2=={PIKE_SMB2_VERSION}",
                "-d",
                str(download),
            ],
            check=True,
        )
        (archive,) = download.glob("*.tar.gz")
        with tarfile.open(archive) as tar:
            tar.extractall(download, filter="data")
        # Renamed into place whole, so a half-unpacked copy is never taken for a good one.
        (download / unpacked.name).rename(unpacked)
    finally:
        shutil.rmtree(download, ignore_errors=True)
    return unpacked


def _run_pike_tests(sdist: Path, env: Dict[str, str]) -> Tuple[str, float]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not nosamba"]
    if sys.version_info >= (3, 12):
        # pike/path.py imports pathlib._WindowsFlavour, which Python 3.12 removed.
        args.append("--ignore=tests/test_path.py")
    start = time.monotonic()
    done = subprocess.run(args, check=False, cwd=sdist, env=env, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - start
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, (
        f"pike-smb2's tests failed ({summary}):\n{done.stdout[-4000:]}{done.stderr[-2000:]}"
    )
    return summary, wall


def _count(summary: str, outcome: str) -> int:
    found = re.search(rf"(\d+) {outcome}", summary)
    return int(found.group(1)) if found else 0


def _transport_module(env: Dict[str, str]) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import pike.transport as t; print(t.__name__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_pike_smb2_own_tests_pass_as_with_the_original_transport(server: samba.SambaServer) -> None:
    """pike-smb2 0.4.6's ``tests/`` (its sdist), with its original transport, then with
    pike-core's: the same number pass, none fails.

    ``-m "not nosamba"`` leaves out the 4 symlink tests that fail against Samba with
    either transport (Samba answers STATUS_NOT_A_REPARSE_POINT).
    """
    sdist = _pike_sdist()
    base = {k: v for k, v in os.environ.items() if k != "PIKE_SMB2_SHIM"}
    base.update(server.env())
    original_env = dict(base, PIKE_SMB2_SHIM="off")
    assert _transport_module(original_env) == "pike.transport"
    assert _transport_module(base) == "pike_core.compat.pike"
    original, original_wall = _run_pike_tests(sdist, original_env)
    ours, our_wall = _run_pike_tests(sdist, base)
    print(f"\noriginal transport: {original} (wall {original_wall:.1f} s)")
    print(f"pike-core:          {ours} (wall {our_wall:.1f} s)")
    assert _count(ours, "passed") == _count(original, "passed") > 0
    assert _count(ours, "failed") == _count(original, "failed") == 0
    assert _count(ours, "error") == 0
    if sys.version_info[:2] == (3, 11):
        assert _count(ours, "passed") == 75
