"""The flags of `paas engine run` and friends, parsed as Docker parses them.

Sizes, CPUs, env, labels, names, signals, and the image's ENTRYPOINT/CMD rule; errors are
UsageError (exit 2) so a typo never starts a container.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from paas.engine.runtime.process import signal_number
from paas.errors import ContainerError, UsageError

if TYPE_CHECKING:  # `exec` and the other verbs use these flags without loading images or the runtime
    from paas.engine.images import Image
    from paas.engine.runtime import Runtime

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# Word lists for names nobody gave (Docker's style, adjective_noun; our own words).
ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid",
              "merry", "nimble", "proud", "quiet", "swift", "tidy", "vivid", "witty", "zesty")
NOUNS = ("otter", "falcon", "badger", "heron", "lynx", "marten", "newt", "orca", "puffin",
         "quail", "raven", "stoat", "tapir", "vole", "walrus", "wren", "yak", "zebu")


def check_cpus(cpus: float) -> float:
    available = os.cpu_count() or 1
    if not 0.01 <= cpus <= available:
        raise UsageError(f"range of CPUs is from 0.01 to {available}.00, "
                         f"as there are only {available} CPUs available")
    return cpus


def check_workdir(workdir: str | None) -> None:
    """-w must be absolute, as Docker requires."""
    if workdir is not None and not workdir.startswith("/"):
        raise UsageError(f"the working directory {workdir!r} is invalid, it needs to be an absolute path")


def merged_env(image_env: Iterable[str], flags: Iterable[str]) -> tuple[str, ...]:
    """The image's ENV with -e on top; `-e KEY` alone takes KEY from the caller, if set."""
    env = dict(item.partition("=")[::2] for item in image_env)
    for item in flags:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid environment variable {item!r}")
        if not sep:
            if key not in os.environ:
                continue  # Docker drops a bare name the caller does not have
            value = os.environ[key]
        env[key] = value
    return tuple(f"{key}={value}" for key, value in env.items())


def parse_labels(flags: Iterable[str]) -> dict[str, str]:
    labels = {}
    for item in flags:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid label {item!r}: KEY=VALUE")
        labels[key] = value
    return labels


def container_name(runtime: Runtime, wanted: str | None) -> str:
    """The --name, checked free; else a fresh adjective_noun."""
    taken = {c.name for c in runtime.list()}
    if wanted is not None:
        if not _NAME.match(wanted):
            raise UsageError(f"invalid container name {wanted!r}: [a-zA-Z0-9][a-zA-Z0-9_.-]+")
        if wanted in taken:
            raise ContainerError(f'the container name "{wanted}" is already in use')
        return wanted
    while True:
        name = f"{random.choice(ADJECTIVES)}_{random.choice(NOUNS)}"
        if name not in taken:
            return name
        name += str(random.randint(0, 99))
        if name not in taken:
            return name


def image_argv(image: Image, command: tuple[str, ...]) -> tuple[str, ...]:
    """Docker's rule: ENTRYPOINT stays, the command line's args replace the image's CMD."""
    config = image.config
    argv = (*(config.entrypoint or ()), *(command or config.cmd or ()))
    if not argv:
        raise UsageError("no command specified: the image has no CMD or ENTRYPOINT")
    return argv


def parse_signal(text: str) -> int:
    """A signal by number, name or SIG-name (KILL, SIGTERM, 9)."""
    try:
        return signal_number(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
