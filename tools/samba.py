#!/usr/bin/env python3
"""A private Samba server on loopback, for end-to-end tests of pike-smb2 over pike-core.

Library use::

    ensure_samba()
    with SambaServer(Path(tempfile.mkdtemp())) as srv:
        client.connect(srv.host, srv.port)      # creds: srv.creds, share: srv.share

Command line (runs until Ctrl-C, prints the variables pike's test suite reads)::

    python tools/samba.py --serve [--port N] [--workdir DIR]

Linux only, and it must run as root: smbd switches to the share user's uid for each
connection. The workdir must sit under world-searchable directories (``/tmp`` is fine;
pytest's ``tmp_path`` is not, its base is 0700).

Starting a server makes the calling process a child subreaper for the rest of its life
(see ``_become_subreaper``): orphans of any of its descendants become its children.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import final

__all__ = [
    "DEFAULT_PASSWORD",
    "DEFAULT_SHARE",
    "SambaError",
    "SambaServer",
    "ensure_samba",
    "find_free_port",
]

DEFAULT_PASSWORD = "pike-Passw0rd"
DEFAULT_SHARE = "pike"
LOOPBACK = "127.0.0.1"

_PR_SET_CHILD_SUBREAPER = 36
_subreaper_lock = threading.Lock()
_is_subreaper = False


class SambaError(RuntimeError):
    """The server could not be installed, started or stopped."""


def _find_tool(name: str) -> str | None:
    # root's PATH normally has the sbin directories, but CI environments may not.
    found = shutil.which(name)
    if found is not None:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/sbin"):
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_samba() -> None:
    """Install Debian's ``samba`` unless ``smbd`` and ``smbpasswd`` are present."""
    if _find_tool("smbd") is not None and _find_tool("smbpasswd") is not None:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "--no-install-recommends", "samba"]
    if subprocess.run(install, env=env, check=False).returncode != 0:
        # A fresh container has no package lists yet; refresh once and retry.
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(install, env=env, check=True)
    if _find_tool("smbd") is None or _find_tool("smbpasswd") is None:
        raise SambaError("samba was installed but smbd/smbpasswd are still not found")


def find_free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _become_subreaper() -> None:
    """Make this process adopt its orphaned descendants.

    smbd forks a child per connection. When smbd dies first those children are
    re-parented; the container's PID 1 never reaps them, so they would linger as
    zombies and keep smbd's process group alive. As a subreaper we inherit them and
    can wait for the whole group.
    """
    global _is_subreaper
    with _subreaper_lock:
        if _is_subreaper:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise SambaError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(errno)}")
        _is_subreaper = True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _check_traversable(path: Path, uid: int, gid: int) -> None:
    # smbd chdirs into the share as the share user, so every ancestor must let it pass.
    # We only open up the workdir itself; ancestors belong to the caller.
    for ancestor in path.parents:
        st = ancestor.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & 0o100)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & 0o010)
        else:
            ok = bool(st.st_mode & 0o001)
        if not ok:
            raise SambaError(
                f"{ancestor} is not searchable by uid {uid}, so smbd could not reach"
                " the share; use a workdir under a world-searchable directory such as"
                " /tmp"
            )


# final: __enter__ can then name the class without typing.Self (3.11+).
@final
class SambaServer:
    """One smbd serving one writable share on loopback, stopped by ``stop`` or ``with``.

    Everything smbd writes (config, databases, sockets, logs, the share) lives in
    ``workdir``, which the caller owns and is not removed.
    """

    host: str = LOOPBACK

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        user: str = "www-data",
        password: str = DEFAULT_PASSWORD,
        *,
        share: str = DEFAULT_SHARE,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        debug_level: int = 1,
        global_options: Mapping[str, str] | None = None,
        share_options: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        # 0 until the first start picks a free port.
        self.port = port if port is not None else 0
        self.user = user
        self.password = password
        self.share = share
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.debug_level = debug_level
        # Extra smb.conf lines, applied after (and so overriding) the defaults.
        self.global_options = dict(global_options or {})
        self.share_options = dict(share_options or {})
        self.share_path = self.workdir / "share"
        self.conf_path = self.workdir / "smb.conf"
        self.log_path = self.workdir / "smbd.out"
        self._proc: subprocess.Popen[bytes] | None = None

    # -- read-only facts -------------------------------------------------------------

    @property
    def creds(self) -> str:
        """``user%password``, the form of pike's ``PIKE_CREDS``."""
        return f"{self.user}%{self.password}"

    @property
    def pid(self) -> int:
        """smbd's pid, which is also its process group id."""
        if self._proc is None:
            raise SambaError("the server has not been started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """Whether smbd has been started and has not exited."""
        return self._proc is not None and self._proc.poll() is None

    def env(self) -> dict[str, str]:
        """The variables pike-smb2's test suite reads to find its server."""
        return {
            "PIKE_SERVER": self.host,
            "PIKE_PORT": str(self.port),
            "PIKE_SHARE": self.share,
            "PIKE_CREDS": self.creds,
        }

    def wait(self, timeout: float | None = None) -> int:
        """Block until smbd exits on its own and return its status.

        Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds.
        """
        if self._proc is None:
            raise SambaError("the server is not running")
        return self._proc.wait(timeout)

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> SambaServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Configure, start smbd, and return once its port accepts TCP connections.

        May be called again after ``stop`` or ``kill``: same workdir, share and port.
        """
        if self._proc is not None:
            raise SambaError("the server was already started")
        if os.geteuid() != 0:
            raise SambaError("smbd must run as root to switch to the share user")
        smbd = _find_tool("smbd")
        smbpasswd = _find_tool("smbpasswd")
        if smbd is None or smbpasswd is None:
            raise SambaError("smbd/smbpasswd not found; call ensure_samba() first")
        _become_subreaper()
        self._prepare_dirs()
        # An auto-picked port can be taken by someone else before smbd binds it; smbd
        # then exits at once, and a fresh port is worth another try. A restart (after
        # stop or kill) keeps the port, so clients can reconnect to the same address.
        pick_port = self.port == 0
        attempts = 3 if pick_port else 1
        for attempt in range(attempts):
            if pick_port:
                self.port = find_free_port(self.host)
            self._write_conf()
            if attempt == 0:
                self._add_user(smbpasswd)
            try:
                self._launch(smbd)
                return
            except _SmbdExitedEarlyError:
                if attempt == attempts - 1:
                    raise SambaError(
                        f"smbd exited during start-up (is port {self.port} in use?):\n{_tail(self.log_path)}"
                    ) from None

    def stop(self) -> None:
        """Terminate smbd and its helpers, and wait until every one has been reaped."""
        self._shutdown(signal.SIGTERM)

    def kill(self) -> None:
        """Kill smbd and all its processes at once, as a crash would, then reap them.

        Clients see their connections closed without an SMB-level goodbye.
        """
        if self._proc is None:
            raise SambaError("the server is not running")
        self._shutdown(signal.SIGKILL)

    # -- internals -------------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        try:
            account = pwd.getpwnam(self.user)
        except KeyError:
            raise SambaError(f"no Unix account named {self.user!r}") from None
        self.workdir.mkdir(parents=True, exist_ok=True)
        _check_traversable(self.workdir, account.pw_uid, account.pw_gid)
        # Search permission only: the share user must reach the share, not list the
        # rest.
        mode = self.workdir.stat().st_mode & 0o7777
        self.workdir.chmod(mode | 0o111)
        # Modes as Debian's package sets them. The lock directory in particular must be
        # searchable: smbd children, running as the share user, check msg.lock/<pid> to
        # see whether another client's smbd is alive; if they can't, its share modes
        # are taken as stale and never enforced (no STATUS_SHARING_VIOLATION).
        for name, dir_mode in (
            ("private", 0o700),
            ("lock", 0o755),
            ("state", 0o755),
            ("cache", 0o755),
            ("pid", 0o755),
            ("ncalrpc", 0o755),
            ("log", 0o755),
        ):
            sub = self.workdir / name
            sub.mkdir(exist_ok=True)
            sub.chmod(dir_mode)
        self.share_path.mkdir(exist_ok=True)
        os.chown(self.share_path, account.pw_uid, account.pw_gid)
        self.share_path.chmod(0o755)

    def _write_conf(self) -> None:
        w = self.workdir
        lines = [
            "[global]",
            "server role = standalone server",
            f"smb ports = {self.port}",
            f"interfaces = {self.host}",
            "bind interfaces only = yes",
            "disable netbios = yes",
            "server min protocol = SMB2_02",
            "server max protocol = SMB3_11",
            "load printers = no",
            "printing = bsd",
            "printcap name = /dev/null",
            "disable spoolss = yes",
            "map to guest = never",
            f"passdb backend = tdbsam:{w / 'private' / 'passdb.tdb'}",
            f"private dir = {w / 'private'}",
            f"lock directory = {w / 'lock'}",
            f"state directory = {w / 'state'}",
            f"cache directory = {w / 'cache'}",
            f"pid directory = {w / 'pid'}",
            f"ncalrpc dir = {w / 'ncalrpc'}",
            f"log file = {w / 'log' / 'log.%m'}",
            *(f"{key} = {value}" for key, value in self.global_options.items()),
            "",
            f"[{self.share}]",
            f"path = {self.share_path}",
            "read only = no",
            f"valid users = {self.user}",
            *(f"{key} = {value}" for key, value in self.share_options.items()),
            "",
        ]
        self.conf_path.write_text("\n".join(lines))

    def _add_user(self, smbpasswd: str) -> None:
        secret = f"{self.password}\n{self.password}\n"
        result = subprocess.run(
            [smbpasswd, "-c", str(self.conf_path), "-s", "-a", self.user],
            input=secret.encode(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace")
            raise SambaError(f"smbpasswd failed ({result.returncode}):\n{output}")

    def _launch(self, smbd: str) -> None:
        argv = [
            smbd,
            "-s",
            str(self.conf_path),
            "-F",
            "--no-process-group",
            "--debug-stdout",
            "-d",
            str(self.debug_level),
        ]
        with self.log_path.open("ab") as log:
            # A session of its own: smbd signals its whole process group on shutdown,
            # which must not be ours. In a new session it must not try to make a group
            # itself (--no-process-group), or it fails with "Failed to create session".
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_until_accepting()
        except BaseException:
            self._abandon()
            raise

    def _wait_until_accepting(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SambaError(
                    f"smbd did not accept connections on {self.host}:{self.port} within"
                    f" {self.start_timeout}s:\n{_tail(self.log_path)}"
                )
            try:
                address = (self.host, self.port)
                with socket.create_connection(address, timeout=remaining):
                    pass
            except OSError:
                pass
            else:
                # Someone else may hold the port (smbd then fails to bind and exits):
                # only smbd's own listening socket counts.
                if _owns_listener(self._proc.pid, self.host, self.port):
                    return
            # A refused connect returns at once; pausing by waiting on smbd's own exit
            # both rate-limits the retries and notices a failed start immediately.
            try:
                self._proc.wait(timeout=min(0.02, max(remaining, 0.001)))
            except subprocess.TimeoutExpired:
                continue
            raise _SmbdExitedEarlyError

    def _abandon(self) -> None:
        # Start-up failed: leave no processes behind, but report the original error.
        self._shutdown(signal.SIGKILL)

    def _shutdown(self, first: signal.Signals) -> None:
        if self._proc is None:
            return
        try:
            if self._terminate_all(first, self.stop_timeout):
                return
            # Something ignored SIGTERM for too long; don't let a test hang on it.
            if first != signal.SIGKILL and self._terminate_all(signal.SIGKILL, self.stop_timeout):
                return
            raise SambaError(f"smbd (process group {self.pid}) or a helper of it did not exit")
        finally:
            self._proc = None

    def _terminate_all(self, sig: signal.Signals, timeout: float) -> bool:
        """Signal smbd's group and its helpers' groups; True once all are reaped in time."""
        deadline = time.monotonic() + timeout
        groups = {self.pid}
        while groups:
            groups |= self._helper_groups()
            for pgid in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, sig)
            for pgid in groups:
                if not self._reap_group(pgid, deadline - time.monotonic()):
                    return False
            if time.monotonic() > deadline:
                return False
            # A helper may have been started while we were signalling.
            groups = self._helper_groups()
        return True

    def _helper_groups(self) -> set[int]:
        """Process groups, other than smbd's, of processes running on our smb.conf.

        smbd starts samba-dcerpcd on demand (e.g. when a client opens a pipe on IPC$),
        and that daemon calls setsid(), so it escapes smbd's process group. It is
        recognised by the ``--configfile=<our conf>`` that smbd passes it.
        """
        conf = str(self.conf_path)
        wanted = {f"--configfile={conf}".encode()}
        found: set[int] = set()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
                if not wanted.intersection(argv) and not _has_option(argv, conf):
                    continue
                found.add(os.getpgid(int(entry.name)))
            except OSError:
                continue  # gone meanwhile
        found.discard(self.pid)
        return found

    def _reap_group(self, pgid: int, timeout: float) -> bool:
        """Wait up to ``timeout`` for every process of group ``pgid`` to be reaped.

        smbd's processes and helpers are our descendants, and as a subreaper we inherit
        each one whose parent dies, so waitpid on the group reports ECHILD exactly when
        the group is empty. waitpid has no timeout; a daemon thread does it and we wait
        on the thread instead.
        """
        proc = self._proc
        assert proc is not None
        done = threading.Event()
        failure: list[OSError] = []

        def reap() -> None:
            try:
                if pgid == proc.pid:
                    # Through Popen first, so it records the exit status and won't warn.
                    proc.wait()
                while True:
                    try:
                        os.waitpid(-pgid, 0)
                    except ChildProcessError:
                        break
            except OSError as exc:  # handed to the caller, which re-raises it
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=reap, name=f"smbd-reaper-{pgid}", daemon=True).start()
        finished = done.wait(max(timeout, 0.0))
        if failure:
            raise failure[0]
        return finished


def _owns_listener(pid: int, host: str, port: int) -> bool:
    """Whether process ``pid`` holds the TCP socket listening on ``host:port``."""
    # /proc/net/tcp prints the address as the raw 32-bit value in host byte order.
    wanted = {
        f"{int.from_bytes(socket.inet_aton(addr), sys.byteorder):08X}:{port:04X}"
        for addr in (host, "0.0.0.0")
    }
    inodes: set[str] = set()
    with open("/proc/net/tcp") as table:
        next(table)  # column headings
        for line in table:
            fields = line.split()
            if fields[1] in wanted and fields[3] == "0A":  # 0A: TCP_LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return False
    try:
        fds = os.scandir(f"/proc/{pid}/fd")
    except OSError:
        return False
    with fds:
        for fd in fds:
            try:
                if os.readlink(fd.path) in inodes:
                    return True
            except OSError:
                continue  # closed meanwhile
    return False


def _has_option(argv: list[bytes], conf: str) -> bool:
    """Whether argv passes ``conf`` as ``-s CONF`` or ``--configfile CONF``."""
    value = conf.encode()
    return any(arg in (b"-s", b"--configfile") and nxt == value for arg, nxt in zip(argv, argv[1:]))


class _SmbdExitedEarlyError(Exception):
    pass


def _serve(args: argparse.Namespace) -> int:
    ensure_samba()
    own_workdir = args.workdir is None
    workdir: Path = Path(tempfile.mkdtemp(prefix="pike-samba-")) if own_workdir else args.workdir

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # `kill <pid>` should clean up like Ctrl-C does.
    signal.signal(signal.SIGTERM, on_term)
    server = SambaServer(workdir, args.port, args.user, args.password, share=args.share)
    try:
        with server:
            for key, value in server.env().items():
                print(f"export {key}={shlex.quote(value)}")
            print(
                f"# smbd pid {server.pid}, workdir {workdir}; Ctrl-C stops it",
                flush=True,
            )
            status = server.wait()
            print(
                f"smbd exited with status {status}:\n{_tail(server.log_path)}",
                file=sys.stderr,
            )
            return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    summary = __doc__.splitlines()[0] if __doc__ else None
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--serve", action="store_true", required=True, help="run a server until Ctrl-C")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="default: a temporary directory, removed on exit",
    )
    parser.add_argument("--user", default="www-data")
    parser.add_argument("--password", default=DEFAULT_PASSWORD)
    parser.add_argument("--share", default=DEFAULT_SHARE)
    return _serve(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
