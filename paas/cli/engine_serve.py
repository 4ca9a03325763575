"""`paas engine serve`: the engine root's warm server, which runs `paas engine ...` commands for
the thin client (client.py) in forked children that have everything imported already.

One per root (a lock like the monitor's, monitorlock.py), single-threaded: a poll loop over
the listening socket `<root>/engine.sock` (mode 0600), each client's connection and a pidfd
per child. A connection from another uid is refused. A child takes the client's fds 0-2,
working directory, umask and environment, leaves our session, runs the command exactly as
paas.cli.main would in the client's process, and exits with its code; we send the client
the child's wait status, deliver the signals it forwards, and SIGHUP the child if the client
goes away first (what a closed terminal would do). SIGTERM/SIGINT: stop accepting, remove the
socket, let the running commands end and report; a second one ends the server at once.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import importlib
import io
import os
import select
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click

from paas.cli import client
from paas.cli.context import Context, pass_ctx
from paas.engine.runtime import monitorlock

# What `paas engine` commands import, loaded once here so that no child pays for it.
PRELOAD = (
    "paas.cli.main", "paas.cli.engine", "paas.cli.engine_run", "paas.cli.engine_exec",
    "paas.cli.engine_stats", "paas.engine.engine", "paas.engine.runtime.engine",
    "paas.engine.runtime.exec", "paas.engine.network", "paas.engine.nat", "paas.engine.gc",
    "paas.engine.registry", "paas.engine.dockerfile", "paas.store",
)
REQUEST_MAX = 1 << 20
FDS_MAX = 8  # a request carries 4; room to see (and close) a few too many
CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
BACKLOG = 64
EXIT_UNCAUGHT = 1


@dataclass(slots=True)
class _Session:
    """One client's command: its connection (None once the client left) and its child."""

    conn: socket.socket | None
    pid: int = 0
    pidfd: int = -1


def _log(line: str) -> None:
    click.echo(line, err=True)


def _std_fds_open() -> None:
    """Fds 0-2 exist, so a received fd never lands on them (the child dup2s onto them)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _listen(path: Path) -> tuple[socket.socket, tuple[int, int]]:
    """Listen on `path`, made whole under a temporary name then renamed into place, so a
    client never finds a socket that is not ready or has another mode. (dev, ino) of it."""
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    address, dir_fd = client.unix_address(str(temp))
    try:
        sock.bind(address)
    finally:
        if dir_fd >= 0:
            os.close(dir_fd)
    os.chmod(temp, 0o600)
    sock.listen(BACKLOG)
    sock.setblocking(False)
    os.rename(temp, path)
    made = os.stat(path)
    return sock, (made.st_dev, made.st_ino)


def _remove_socket(path: Path, ours: tuple[int, int]) -> None:
    with contextlib.suppress(FileNotFoundError):
        found = os.stat(path)
        if (found.st_dev, found.st_ino) == ours:  # not one a later server put there
            path.unlink()


def _receive(conn: socket.socket) -> tuple[bytes, list[int]]:
    """The request and its fds; (b"", []) if it is cut short or not a request at all.
    BlockingIOError if there is none yet (an event of an fd number closed and reused)."""
    data, ancdata, flags, _ = conn.recvmsg(REQUEST_MAX, socket.CMSG_SPACE(FDS_MAX * 4), socket.MSG_DONTWAIT)
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return b"", []
    return data, list(fds)


class Server:
    """The poll loop: accept, fork a child per request, relay signals and exit statuses."""

    def __init__(self, listener: socket.socket, wakeup: int) -> None:
        self.listener: socket.socket | None = listener
        self.wakeup = wakeup
        self.poll = select.poll()
        self.poll.register(listener, select.POLLIN)
        self.poll.register(wakeup, select.POLLIN)
        self.by_conn: dict[int, _Session] = {}
        self.by_pidfd: dict[int, _Session] = {}
        self.stops = 0

    def run(self, on_stop: Callable[[], None]) -> None:
        """Serve until stopped; then `on_stop` (it removes the socket), and serve the running
        commands until the last has ended, or until stopped again."""
        try:
            while self.stops == 0:
                self._step()
        finally:
            listener, self.listener = self.listener, None
            if listener is not None:
                self.poll.unregister(listener)
                listener.close()
            on_stop()
        while self.by_pidfd and self.stops < 2:
            self._step()

    def stop(self, _signum: int, _frame: object) -> None:
        self.stops += 1  # the loop sees it: the wakeup fd ends its poll

    def _step(self) -> None:
        for fd, _events in self.poll.poll():
            if fd == self.wakeup:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 64)
            elif self.listener is not None and fd == self.listener.fileno():
                self._accept()
            elif fd in self.by_pidfd:
                self._reap(self.by_pidfd.pop(fd))
            elif fd in self.by_conn:
                self._from_client(self.by_conn[fd])

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        _pid, uid, _gid = CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, CRED.size))
        if uid != os.geteuid():  # the socket's mode keeps them out; this is the second lock
            self._refuse(conn, f"uid {uid} may not use this server")
            return
        self.by_conn[conn.fileno()] = _Session(conn)
        self.poll.register(conn, select.POLLIN)

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        with contextlib.suppress(OSError), conn:
            conn.send(client.REFUSED + reason.encode())

    def _from_client(self, session: _Session) -> None:
        assert session.conn is not None
        if session.pid == 0:
            self._start(session)
            return
        try:
            message = session.conn.recv(64)
        except OSError:
            message = b""
        if not message:  # the client is gone
            self._drop_conn(session)
            self._signal(session, signal.SIGHUP)
        elif message[:1] == client.SIGNAL and len(message) == 2 and message[1] in client.FORWARDED:
            self._signal(session, message[1])

    def _start(self, session: _Session) -> None:
        assert session.conn is not None
        fds: list[int] = []
        try:
            data, fds = _receive(session.conn)
            request = client.decode_request(data)
        except BlockingIOError:
            return
        except (OSError, ValueError):  # no request of ours: refuse it
            for fd in fds:
                os.close(fd)
            self._drop_conn(session, refuse="not a request this server understands")
            return
        try:
            pid = os.fork()
        except OSError as exc:  # out of processes or memory: the client runs it itself
            pid = -1
            self._drop_conn(session, refuse=f"cannot fork: {exc.strerror}")
        if pid == 0:
            _child(*request, fds)
        for fd in fds:
            os.close(fd)
        if pid < 0:
            return
        session.pid, session.pidfd = pid, os.pidfd_open(pid)
        self.by_pidfd[session.pidfd] = session
        self.poll.register(session.pidfd, select.POLLIN)

    def _signal(self, session: _Session, signum: int) -> None:
        if session.pidfd >= 0:  # not yet reaped, so the pid is still the child's
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(session.pidfd, signum)

    def _reap(self, session: _Session) -> None:
        pid, status = os.waitpid(session.pid, os.WNOHANG)
        if pid == 0:  # a stale event of a reused fd number: it runs on
            self.by_pidfd[session.pidfd] = session
            return
        self.poll.unregister(session.pidfd)
        os.close(session.pidfd)
        session.pidfd = -1
        if session.conn is not None:
            with contextlib.suppress(OSError):
                session.conn.send(client.EXITED + client.STATUS.pack(status))
            self._drop_conn(session)

    def _drop_conn(self, session: _Session, refuse: str = "") -> None:
        conn, session.conn = session.conn, None
        if conn is None:
            return
        self.poll.unregister(conn)
        del self.by_conn[conn.fileno()]
        if refuse:
            self._refuse(conn, refuse)
        conn.close()


def _stdio(env: dict[bytes, bytes]) -> None:
    """New sys.std* over the received fds 0-2, buffered as the interpreter would have made
    them at start for these files (line-buffered on a terminal, as the client's would be)."""
    unbuffered = bool(env.get(b"PYTHONUNBUFFERED"))
    streams = []
    for fd, old in ((0, sys.stdin), (1, sys.stdout), (2, sys.stderr)):
        raw = io.FileIO(fd, "r" if fd == 0 else "w", closefd=False)
        buffered: io.RawIOBase | io.BufferedIOBase = raw
        if fd == 0:
            buffered = io.BufferedReader(raw)
        elif not unbuffered:
            buffered = io.BufferedWriter(raw)
        streams.append(io.TextIOWrapper(  # -u: text straight to the raw file, as python -u does
            buffered, encoding=old.encoding, errors=old.errors,  # type: ignore[arg-type,type-var]
            line_buffering=fd == 2 or os.isatty(fd), write_through=unbuffered and fd != 0,
        ))
    sys.stdin, sys.stdout, sys.stderr = streams


def _child(argv: list[str], env: dict[bytes, bytes], umask: int, fds: list[int]) -> None:
    """The forked child: become the client's command, run it, exit with its code. Never
    returns: the server's frames below it must not run here."""
    code = EXIT_UNCAUGHT
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        os.fchdir(fds[3])
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the socket, the lock, the others' fds
        os.umask(umask)
        os.environb.clear()
        os.environb.update(env)
        _stdio(env)
        sys.argv = ["paas", "engine", *argv]
        atexit._clear()  # the server's exit hooks are not this command's
        code = _run(argv)
        atexit._run_exitfuncs()
    finally:
        with contextlib.suppress(Exception):  # the streams may be broken; the code stands
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _run(argv: list[str]) -> int:
    """paas.cli.main.main, and what the interpreter does with what escapes it."""
    from paas.cli.main import main

    try:
        return main(["engine", *argv])
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # sys.exit("message")
        return EXIT_UNCAUGHT
    except KeyboardInterrupt:  # like the interpreter: a traceback, then die of SIGINT
        traceback.print_exc()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        return 128 + signal.SIGINT
    except Exception:  # noqa: BLE001 (the interpreter's own last resort, in a child)
        traceback.print_exc()
        return EXIT_UNCAUGHT


def serve(root: Path, wait_for_lock: bool) -> bool:
    """Serve `root` until SIGTERM/SIGINT; False if another server holds it (and not wait)."""
    lock = monitorlock.acquire(root, wait=wait_for_lock, name=monitorlock.SERVER_LOCK_FILE)
    if lock is None:
        return False
    try:
        _std_fds_open()
        for module in PRELOAD:
            importlib.import_module(module)
        # What is loaded now is never garbage: out of the collector's sight, a child's
        # collections do not touch (and so copy) the pages of every object it inherited.
        gc.collect()
        gc.freeze()
        path = root / client.SOCKET_NAME
        listener, ours = _listen(path)
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        server = Server(listener, read_end)
        signal.set_wakeup_fd(write_end)
        previous = {signum: signal.signal(signum, server.stop) for signum in (signal.SIGTERM, signal.SIGINT)}
        _log(f"engine server on {path} (pid {os.getpid()})")
        try:
            server.run(lambda: _remove_socket(path, ours))
        finally:
            signal.set_wakeup_fd(-1)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            os.close(read_end)
            os.close(write_end)
            _remove_socket(path, ours)
    finally:
        os.close(lock)
    return True


@click.command("serve")
@click.option("--wait", "wait_for_lock", is_flag=True,
              help="If another server serves this root, wait for it to end, then take over.")
@pass_ctx
def serve_command(ctx: Context, wait_for_lock: bool) -> None:
    """Serve `paas engine` commands to the `paas` client from warm forked children (fast)."""
    root = ctx.settings.engine_root
    if not serve(root, wait_for_lock):
        click.echo(f"an engine server already serves {root}", err=True)
        raise click.exceptions.Exit(1)
