"""The `paas` entry point: a thin client of the engine root's warm server when one runs.

`paas engine ...` costs ~130 ms of interpreter start and imports before any work when it
runs in-process. When `paas engine serve` (engine_serve.py) listens on the root's socket,
this module, which imports only the stdlib pieces it needs, hands it the command line, the
environment, the umask, the working directory and fds 0-2, forwards our signals, and exits
as the command did (Docker CLI -> dockerd). Without a server, or for any other command, it
runs the command in this process, as paas.cli.main always did (PAAS_ENGINE_SERVER=0 asks
for that even when a server runs).

The wire protocol lives here too, so client and server share one definition. The socket is
SOCK_SEQPACKET: every message arrives whole, with no framing of our own.
- request: b"\\0".join([VERSION, umask, argc, *argv, *environ]) with SCM_RIGHTS fds 0, 1,
  2 and the working directory;
- client -> server: SIGNAL + one byte, a signal number to deliver to the command;
- server -> client: EXITED + the command's wait status ("!i"), or REFUSED + a reason (the
  command did not run: the client runs it in-process).
"""

from __future__ import annotations

# The C modules under socket and signal: their Python wrappers import enum (~6 ms).
import _signal as signal
import _socket as socket
import os
import struct
import sys

from paas.home import engine_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

SOCKET_NAME = "engine.sock"
VERSION = b"paas-engine/1"
SIGNAL = b"S"
EXITED = b"X"
REFUSED = b"E"
STATUS = struct.Struct("!i")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH)
MAX_PATH = 100  # sun_path holds 108 bytes; longer paths go through /proc/self/fd
IN_PROCESS = ("serve", "monitor")  # the daemons themselves never go through a server
EXIT_SERVER_LOST = 125  # Docker's code for an error of the daemon rather than of the command
OPT_OUT = "PAAS_ENGINE_SERVER"  # "0": never use a server (benchmarks, debugging); else use it if up


def socket_path(env: Mapping[str, str]) -> str:
    return os.path.join(engine_root(env), SOCKET_NAME)


def unix_address(path: str) -> tuple[str, int]:
    """An address `connect`/`bind` take for `path`, and a directory fd to close after (-1).
    A path too long for sun_path is reached through its directory's /proc/self/fd entry."""
    if len(os.fsencode(path)) < MAX_PATH:
        return path, -1
    dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}", dir_fd


def encode_request(argv: list[str], umask: int) -> bytes:
    environ = [key + b"=" + value for key, value in os.environb.items()]
    return b"\0".join([VERSION, b"%d" % umask, b"%d" % len(argv), *map(os.fsencode, argv), *environ])


def decode_request(data: bytes) -> tuple[list[str], dict[bytes, bytes], int]:
    """(argv, environ, umask); ValueError if `data` is no request of this version."""
    version, umask, argc, *rest = data.split(b"\0")
    if version != VERSION or int(argc) > len(rest):
        raise ValueError("not a request of this version")
    argv = [os.fsdecode(arg) for arg in rest[: int(argc)]]
    environ = dict(item.partition(b"=")[::2] for item in rest[int(argc):])
    return argv, environ, int(umask)


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        address, dir_fd = unix_address(path)
        try:
            sock.connect(address)
        finally:
            if dir_fd >= 0:
                os.close(dir_fd)
    except OSError:  # no server (no socket, refused, not allowed): run in-process
        sock.close()
        return None
    return sock


class _Forwarder:
    """Sends the signals we get to the command; holds them until the request is sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending: list[int] | None = []

    def __call__(self, signum: int, _frame: object) -> None:
        if self.pending is not None:
            self.pending.append(signum)
            return
        try:
            self.sock.send(SIGNAL + bytes([signum]))
        except OSError:  # the server is gone: the reply loop reports it
            return

    def sent(self) -> None:
        pending, self.pending = self.pending or [], None
        for signum in pending:
            self(signum, None)


def _send_request(sock: socket.socket, argv: list[str]) -> bool:
    umask = os.umask(0o22)
    os.umask(umask)
    try:
        cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # a removed working directory: in-process, which reports what it can
        return False
    try:
        fds = struct.pack("4i", 0, 1, 2, cwd)
        sock.sendmsg([encode_request(argv, umask)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    except OSError:  # a closed fd 0-2, an environment too big for one message: in-process
        return False
    finally:
        os.close(cwd)
    return True


def _exit_like(status: int) -> None:
    """End this process as the command ended: its exit code, or the signal that killed it."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        sys.exit(128 + signum)  # a signal whose default is not to end the process
    sys.exit(os.waitstatus_to_exitcode(status))


def forward(sock: socket.socket, argv: list[str]) -> bool:
    """Run `paas engine ARGV` in the server and exit as it did; False if it would not run it."""
    forwarder = _Forwarder(sock)
    # One we ignore (as `cmd &` does with SIGINT) the command in-process would ignore too.
    previous = {signum: signal.signal(signum, forwarder) for signum in FORWARDED
                if signal.getsignal(signum) != signal.SIG_IGN}
    if not _send_request(sock, argv):
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return False
    forwarder.sent()
    try:
        reply = sock.recv(256)
    except OSError:
        reply = b""
    if reply.startswith(EXITED) and len(reply) == 1 + STATUS.size:
        _exit_like(STATUS.unpack(reply[1:])[0])
    if reply.startswith(REFUSED):
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        return False
    os.write(2, b"paas: the engine server went away before the command ended\n")
    sys.exit(EXIT_SERVER_LOST)


def _in_process() -> None:
    from paas.cli.main import main as in_process_main

    sys.exit(in_process_main())


def _for_server(argv: list[str]) -> bool:
    return (len(argv) > 1 and argv[0] == "engine" and argv[1] not in IN_PROCESS
            and os.environ.get(OPT_OUT) != "0")


def main() -> None:
    argv = sys.argv[1:]
    if _for_server(argv):
        sock = _connect(socket_path(os.environ))
        if sock is not None:
            try:
                forward(sock, argv[1:])
            finally:
                sock.close()
    _in_process()


if __name__ == "__main__":
    main()
