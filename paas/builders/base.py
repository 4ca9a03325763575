"""What every builder receives and returns, and the protocol a builder implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from paas.config import Settings
from paas.core.procfile import parse_procfile
from paas.engine.engine import Engine
from paas.engine.images import Image
from paas.errors import BuildError

Log = Callable[[str], None]
MAX_SOURCE_FILE = 64 * 1024


@dataclass(frozen=True, slots=True)
class BuildJob:
    app: str
    source: Path
    engine: Engine
    settings: Settings
    log: Log
    # The app's config: ENV_DIR of the buildpacks, BUILDPACK_URL, build args.
    config: dict[str, str] = field(default_factory=dict)
    # `builder:set APP selected NAME`: the builder to use instead of detection ("" = detect).
    selected: str = ""


@dataclass(frozen=True, slots=True)
class BuildResult:
    image: Image
    # Process type -> command; "" means the image's own ENTRYPOINT/CMD.
    processes: dict[str, str]


class NotDetectedError(BuildError):
    """A builder chosen as the last resort found nothing it knows how to build."""


class Builder(Protocol):
    name: str
    # What `detect` looks for, said as its absence ("no Dockerfile"): the message when no
    # builder applies lists these.
    absent: str

    def detect(self, source: Path) -> bool: ...

    def build(self, job: BuildJob) -> BuildResult: ...


def read_procfile(source: Path) -> dict[str, str]:
    path = source / "Procfile"
    if not path.is_file() or path.is_symlink():
        return {}
    if path.stat().st_size > MAX_SOURCE_FILE:
        raise BuildError("the Procfile is larger than 64 KiB")
    try:
        return parse_procfile(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise BuildError("the Procfile is not UTF-8 text") from None
