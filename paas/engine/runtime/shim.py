"""The container's PID 1 binary (shim.c): where it lives and building it on first use.

init.py execs it once the app is forked, so each running container costs the host a small
static C process instead of a Python interpreter. The binary is named after the hash of its
source, so an edited shim.c is rebuilt and containers already running keep their binary.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

from paas.errors import ContainerError

SOURCE = Path(__file__).with_name("shim.c")
COMPILER = "gcc"
HINT = "install a C compiler and static libc (Debian: apt-get install gcc libc6-dev)"


@functools.cache
def shim_path() -> Path:
    """The shim built from the current source, built now if it is missing."""
    source = SOURCE.read_bytes()
    target = Path(sys.prefix) / "libexec" / "paas" / f"paas-shim-{hashlib.sha256(source).hexdigest()[:12]}"
    if not target.exists():
        build(target)
    return target


def build(target: Path, source: Path = SOURCE, compiler: str = COMPILER) -> None:
    """Compile next to `target`, then rename: concurrent builders each win atomically."""
    import subprocess  # only on a first start after an install or an edit of shim.c

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"cannot create {target.parent} for the container shim: {exc}") from None
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    argv = [compiler, "-O2", "-static", "-o", str(tmp), str(source)]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ContainerError(f"cannot build the container shim: {exc.strerror}; {HINT}") from None
    try:
        if result.returncode != 0:
            raise ContainerError(
                f"cannot build the container shim ({compiler} exited with {result.returncode}):"
                f" {result.stderr.strip()[-2000:]}; {HINT}"
            )
        os.rename(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
