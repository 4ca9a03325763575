"""The records a build passes between its steps: where a stage is, and what a step made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from paas.engine.dockerfile import metadata
from paas.engine.dockerfile.parser import Stage
from paas.engine.images import Image, ImageConfig


@dataclass
class StageState:
    """Where one stage is: the last image committed and the config and ARGs in scope."""

    stage: Stage
    image: Image | None  # None until the first commit of a FROM scratch stage
    config: ImageConfig
    args: dict[str, str] = field(default_factory=dict)  # ARG values in scope
    cmd_set: bool = False  # this stage set CMD, so a later ENTRYPOINT keeps it

    def variables(self) -> dict[str, str]:
        """What `$NAME` means here: the ARGs in scope, overridden by the config's ENV."""
        return metadata.variables(self.config, self.args)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a step that missed the cache made: its layer tar (None: metadata only) and config."""

    layer: Path | None
    config: ImageConfig
