"""Restart policies (`--restart no|on-failure[:N]|always|unless-stopped`), Docker's back-off,
the host's boot id, and the per-container lock that orders a user's stop against a restart.

Pure decisions live here; the monitor (monitor.py) applies them to real exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from paas.errors import ContainerError

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
FIRST_DELAY_S = 0.1  # Docker's restart back-off: 100 ms, doubling after each quick exit...
MAX_DELAY_S = 60.0  # ...up to one minute...
STEADY_RUN_S = 10.0  # ...and back to 100 ms once a run lasted this long


class RestartMode(StrEnum):
    NO = "no"
    ON_FAILURE = "on-failure"
    ALWAYS = "always"
    UNLESS_STOPPED = "unless-stopped"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """A parsed policy; `max_retries` 0 means no limit (on-failure only)."""

    mode: RestartMode = RestartMode.NO
    max_retries: int = 0

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        name, colon, count = text.partition(":")
        try:
            mode = RestartMode(name)
        except ValueError:
            raise ContainerError(
                f"invalid restart policy {text!r}: no, on-failure[:N], always or unless-stopped"
            ) from None
        if not colon:
            return cls(mode)
        if mode is not RestartMode.ON_FAILURE:
            raise ContainerError(f"invalid restart policy {text!r}: only on-failure takes a count")
        if not count.isdigit():
            raise ContainerError(f"invalid restart policy {text!r}: the count is a number >= 0")
        return cls(mode, int(count))

    def __str__(self) -> str:
        return f"{self.mode}:{self.max_retries}" if self.max_retries else str(self.mode)

    @property
    def needs_monitor(self) -> bool:
        return self.mode is not RestartMode.NO

    def should_restart(
        self, exit_code: int | None, restart_count: int, stopped_by_user: bool,
        monitor_starting: bool = False,
    ) -> bool:
        """Docker's rules. `always` brings back a container the user stopped only when the
        monitor itself (re)starts, as Docker does when its daemon starts."""
        if self.mode is RestartMode.ALWAYS:
            return monitor_starting or not stopped_by_user
        if stopped_by_user:
            return False
        if self.mode is RestartMode.UNLESS_STOPPED:
            return True
        if self.mode is RestartMode.ON_FAILURE:
            within = not self.max_retries or restart_count < self.max_retries
            return within and exit_code != 0  # None: ended unobserved (a reboot), a failure
        return False


def next_delay(previous: float | None, ran_for: float) -> float:
    """The back-off before the next restart: doubles after each short run, resets after a
    run of STEADY_RUN_S or more."""
    if previous is None or ran_for >= STEADY_RUN_S:
        return FIRST_DELAY_S
    return min(previous * 2, MAX_DELAY_S)


def boot_id() -> str:
    """This boot of the host: state recorded under another boot id names dead processes."""
    return BOOT_ID_PATH.read_text().strip()


@contextlib.contextmanager
def container_lock(directory: Path) -> Iterator[bool]:
    """Hold the container's lock (flock on its directory); yields False if it was removed."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield (directory / "spec.json").is_file()
    finally:
        os.close(fd)
