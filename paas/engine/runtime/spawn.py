"""The engine's side of the launch protocol: start the launcher and talk to it over pipes.

Report pipe (container -> engine), one line each: `pid N` from the launcher, then `ok` or
`error MESSAGE` from the container's init once the app is exec'd or setup failed.
Go pipe (engine -> container): `go` once the cgroup and the veth are in place; if the
engine dies first, the init reads EOF and exits instead.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import paas
from paas.engine.runtime.launchspec import LaunchSpec
from paas.errors import ContainerError

# -c rather than -m: runpy alone would add ~10 ms to every start.
LAUNCHER = "from paas.engine.runtime.launch import main; main()"


def _launcher_env() -> dict[str, str]:
    """Just enough to import paas: no site (saves ~20 ms a start) and none of our secrets,
    which would otherwise be readable in the container as /proc/1/environ."""
    return {"PYTHONPATH": str(Path(paas.__file__).resolve().parent.parent)}


class Launch:
    """One launcher subprocess; its output goes to `output_fd` (a log file or a pipe)."""

    def __init__(self, spec: LaunchSpec, output_fd: int) -> None:
        report_r, report_w = os.pipe()
        go_r, self._go_w = os.pipe()
        spec = replace(spec, report_fd=report_w, go_fd=go_r)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-S", "-c", LAUNCHER],
                env=_launcher_env(),
                stdin=subprocess.PIPE,
                stdout=output_fd,
                stderr=output_fd,
                pass_fds=(report_w, go_r),
                start_new_session=True,  # a terminal's ^C must not reach the container
            )
        except OSError as exc:
            for fd in (report_r, report_w, go_r, self._go_w):
                os.close(fd)
            raise ContainerError(f"cannot start the container launcher: {exc}") from None
        os.close(report_w)
        os.close(go_r)
        self._report = report_r
        self._buffer = b""
        assert self._proc.stdin is not None
        try:
            with self._proc.stdin as stdin:
                stdin.write(spec.to_json().encode())
        except OSError as exc:
            self.close()
            raise ContainerError(f"the container launcher died at once: {exc}") from None

    def read_pid(self, timeout: float) -> int:
        line = self._read_line(timeout)
        self._proc.wait()
        kind, _, value = line.partition(" ")
        if kind != "pid":
            code = self._proc.returncode
            raise ContainerError(value or f"the container launcher exited with {code}")
        return int(value)

    def go(self) -> None:
        os.write(self._go_w, b"go")
        os.close(self._go_w)
        self._go_w = -1

    def wait_ready(self, timeout: float) -> None:
        """Return once the app runs; raise ContainerError with the init's message otherwise."""
        line = self._read_line(timeout)
        kind, _, message = line.partition(" ")
        if kind != "ok":
            raise ContainerError(message or "the container exited during setup")

    def close(self) -> None:
        for fd in (self._report, self._go_w):
            if fd >= 0:
                os.close(fd)
        self._report = self._go_w = -1
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def _read_line(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._report], [], [], left)[0]:
                raise ContainerError(f"the container did not report within {timeout:.0f}s")
            chunk = os.read(self._report, 4096)
            if not chunk:
                return self._buffer.decode(errors="replace")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")
