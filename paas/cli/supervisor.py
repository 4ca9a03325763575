"""A Procfile runner for the platform's own processes: start all, prefix their output, stop all.

If any process exits, the others are stopped and the runner exits non-zero, as foreman does:
a platform with a dead router or worker should not look healthy.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO

STOP_TIMEOUT_S = 10.0
POLL_S = 0.2


@dataclass
class Supervisor:
    commands: Mapping[str, str]
    env: Mapping[str, str]
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _say(self, name: str, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self.out.write(f"{stamp} {name:<7}| {line}\n")
            self.out.flush()

    def start(self) -> None:
        for name, command in self.commands.items():
            proc = subprocess.Popen(
                shlex.split(command), env=dict(self.env), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
            self.procs[name] = proc
            self._say(name, f"started with pid {proc.pid}")
            threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._say(name, raw.decode(errors="replace").rstrip("\n"))

    def wait(self) -> int:
        """Block until a signal or a process exit, then stop everything; the exit code."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        code = 0
        while not self._stopping.is_set():
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    self._say(name, f"exited with status {proc.returncode}; stopping the platform")
                    code = 1
                    self._stopping.set()
                    break
            self._stopping.wait(POLL_S)
        self.stop()
        return code

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self._say(name, "stopped")
