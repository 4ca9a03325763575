"""A command's terminal over SSH (`ssh -t`): the pty pair, its size, modes and TERM, and the
copying.

The client's `pty-req` gives TERM, a size and its terminal modes (erase character, echo...);
its `window-change` requests resize. The command runs with the slave as stdin, stdout and
stderr and as its controlling terminal (a new session, then TIOCSCTTY), so it sees a real
terminal: isatty, the size, SIGWINCH when the client's window changes (TIOCSWINSZ on the master
makes the kernel send it). We hold the master and copy it to the channel both ways; output and
errors are one stream, as with OpenSSH.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paramiko

CHUNK = 32 * 1024
DRAIN_POLL_S = 0.2
WRITE_WAIT_S = 0.02
DEFAULT_TERM = "xterm"
_WINSIZE = "HHHH"


class Terminal:
    """What the client's pty request asked for, and the pty master once a command runs.

    The master is non-blocking and used only under the lock, so closing it can never leave a
    copying thread with a stale fd number (which the server may have reused for a socket).
    """

    def __init__(self, term: str, columns: int, rows: int, modes: bytes = b"") -> None:
        self.term = term or DEFAULT_TERM
        self.modes = parse_modes(modes)
        self._size = (rows, columns)
        self._lock = threading.Lock()
        self._master: int | None = None

    def resize(self, columns: int, rows: int) -> None:
        """A `window-change` request: the command gets SIGWINCH if it runs already."""
        with self._lock:
            self._size = (rows, columns)
            if self._master is not None:
                _set_size(self._master, self._size)

    def open(self) -> tuple[int, int]:
        """A new pty pair (master, slave) of the requested size."""
        master, slave = os.openpty()
        os.set_blocking(master, False)
        _apply_modes(slave, self.modes)
        with self._lock:
            self._master = master
            _set_size(master, self._size)
        return master, slave

    def read(self, timeout: float) -> bytes | None:
        """Output within `timeout` (b"" if none came); None once the pty is closed or every
        holder of the slave is gone."""
        with self._lock:
            master = self._master
        if master is None:
            return None
        with contextlib.suppress(ValueError, OSError):  # closed meanwhile: the next read says so
            select.select([master], [], [], timeout)
        with self._lock:
            if self._master is None:
                return None
            try:
                return os.read(self._master, CHUNK) or None
            except BlockingIOError:
                return b""
            except OSError as exc:
                if exc.errno == errno.EIO:  # the slave side is closed: all output is read
                    return None
                raise

    def write(self, data: bytes) -> bool:
        """Type `data` into the terminal; False once it is closed."""
        view = memoryview(data)
        while view:
            with self._lock:
                if self._master is None:
                    return False
                try:
                    view = view[os.write(self._master, view):]
                    continue
                except BlockingIOError:
                    pass  # the command is not reading: wait outside the lock
            time.sleep(WRITE_WAIT_S)
        return True

    def close(self) -> None:
        with self._lock:
            if self._master is not None:
                os.close(self._master)
                self._master = None


# RFC 4254 section 8 (and RFC 8160's IUTF8): the opcodes of the client's terminal modes.
_CC_OPS = {1: "VINTR", 2: "VQUIT", 3: "VERASE", 4: "VKILL", 5: "VEOF", 6: "VEOL", 7: "VEOL2",
           8: "VSTART", 9: "VSTOP", 10: "VSUSP", 12: "VREPRINT", 13: "VWERASE", 14: "VLNEXT",
           18: "VDISCARD"}
_FLAG_OPS = {  # opcode: (index in tcgetattr's list, flag name)
    30: (0, "IGNPAR"), 31: (0, "PARMRK"), 32: (0, "INPCK"), 33: (0, "ISTRIP"), 34: (0, "INLCR"),
    35: (0, "IGNCR"), 36: (0, "ICRNL"), 37: (0, "IUCLC"), 38: (0, "IXON"), 39: (0, "IXANY"),
    40: (0, "IXOFF"), 41: (0, "IMAXBEL"), 42: (0, "IUTF8"),
    50: (3, "ISIG"), 51: (3, "ICANON"), 52: (3, "XCASE"), 53: (3, "ECHO"), 54: (3, "ECHOE"),
    55: (3, "ECHOK"), 56: (3, "ECHONL"), 57: (3, "NOFLSH"), 58: (3, "TOSTOP"),
    59: (3, "IEXTEN"), 60: (3, "ECHOCTL"), 61: (3, "ECHOKE"), 62: (3, "PENDIN"),
    70: (1, "OPOST"), 71: (1, "OLCUC"), 72: (1, "ONLCR"), 73: (1, "OCRNL"), 74: (1, "ONOCR"),
    75: (1, "ONLRET"),
}
_TTY_OP_END = 0
_FIRST_UNDEFINED_OP = 160  # opcodes from here on carry no known argument: parsing stops
_VDISABLE_SSH = 255  # the client's "no character", Linux's is 0


def parse_modes(modes: bytes) -> dict[int, int]:
    """The encoded terminal modes of a pty request as {opcode: value}; what does not parse is
    left out (the pty keeps the kernel's defaults for it)."""
    found: dict[int, int] = {}
    at = 0
    while at + 5 <= len(modes):
        opcode = modes[at]
        if opcode == _TTY_OP_END or opcode >= _FIRST_UNDEFINED_OP:
            break
        found[opcode] = struct.unpack_from(">I", modes, at + 1)[0]
        at += 5
    return found


def _apply_modes(fd: int, modes: dict[int, int]) -> None:
    """Give the new pty the client's control characters and the flags we know of."""
    if not modes:
        return
    try:
        attrs = termios.tcgetattr(fd)
    except termios.error:
        return  # not a terminal after all: the defaults stay
    for opcode, value in modes.items():
        if opcode in _CC_OPS and hasattr(termios, _CC_OPS[opcode]):
            char = 0 if value == _VDISABLE_SSH else value & 0xFF
            attrs[6][getattr(termios, _CC_OPS[opcode])] = bytes([char])
        elif opcode in _FLAG_OPS and hasattr(termios, _FLAG_OPS[opcode][1]):
            index, name = _FLAG_OPS[opcode]
            flag = getattr(termios, name)
            attrs[index] = attrs[index] | flag if value else attrs[index] & ~flag
    with contextlib.suppress(termios.error):  # a mode this kernel refuses: the defaults stay
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _set_size(fd: int, size: tuple[int, int]) -> None:
    if size[0] > 0 and size[1] > 0:  # 0x0: the client did not know its size; keep the default
        with contextlib.suppress(OSError):
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack(_WINSIZE, *size, 0, 0))


def _take_terminal() -> None:
    # Runs in the child between fork and exec, after start_new_session's setsid(): only an
    # ioctl, so it takes no lock another thread of the server could have held at the fork.
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def spawn(
    terminal: Terminal, argv: Sequence[str], cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start `argv` on a new pty of `terminal` (copy it with pump_out and pump_in)."""
    _, slave = terminal.open()
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env={**env, "TERM": terminal.term}, stdin=slave, stdout=slave,
            stderr=slave, start_new_session=True, preexec_fn=_take_terminal,
        )
    except OSError:
        terminal.close()
        raise
    finally:
        os.close(slave)  # the child holds it now; the master sees EIO once the child is gone
    return proc


def pump_out(terminal: Terminal, channel: paramiko.Channel, exited: threading.Event,
             broken: threading.Event) -> None:
    """Copy the pty's output to the channel until every holder of the slave is gone, or the
    command exited and nothing more came (a daemon it left behind may hold the slave)."""
    try:
        while (data := terminal.read(DRAIN_POLL_S)) is not None:
            if data:
                channel.sendall(data)
            elif exited.is_set():
                return
    except OSError:
        broken.set()  # the client is gone; the session loop kills the process


def pump_in(channel: paramiko.Channel, terminal: Terminal) -> None:
    """Copy what the client types to the pty; its EOF ends the copying, not the command."""
    try:
        while (data := channel.recv(CHUNK)) and terminal.write(data):
            pass
    except OSError:
        pass  # the client went away; the session loop sees to the rest
