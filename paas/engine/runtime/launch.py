"""The launcher process: `python -m paas.engine.runtime.launch`, one per container start.

It reads a LaunchSpec on stdin, unshares the namespaces, forks the container's init (PID 1
of the new pid namespace), reports the init's host pid on the report pipe and exits. The
container therefore outlives whichever platform process asked for it.
"""

from __future__ import annotations

import os
import sys

from paas.engine.runtime import _libc, init, security
from paas.engine.runtime.launchspec import LaunchSpec

BASE_NAMESPACES = _libc.CLONE_NEWNS | _libc.CLONE_NEWUTS | _libc.CLONE_NEWIPC | _libc.CLONE_NEWPID


def namespaces(network: str) -> int:
    return BASE_NAMESPACES if network == "host" else BASE_NAMESPACES | _libc.CLONE_NEWNET


def main() -> None:
    security.hide_from_ptrace()  # inherited by the init it forks, for the init's whole life
    spec = LaunchSpec.from_json(sys.stdin.read())
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        _libc.unshare(namespaces(spec.network))
    except OSError as exc:
        print(f"paas: container failed to start: {exc}", file=sys.stderr, flush=True)
        os.write(spec.report_fd, f"error {exc}\n".encode())
        sys.exit(1)
    pid = os.fork()
    if pid == 0:
        init.main(spec)
    os.write(spec.report_fd, f"pid {pid}\n".encode())
    os._exit(0)


if __name__ == "__main__":
    main()
