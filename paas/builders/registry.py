"""The builder family, in order of detection: the first whose `detect` passes builds the app."""

from __future__ import annotations

from paas.builders.base import Builder, BuildJob, BuildResult
from paas.builders.buildpack import BuildpackBuilder
from paas.builders.dockerfile import DockerfileBuilder
from paas.errors import BuildError


def default_builders() -> list[Builder]:
    return [DockerfileBuilder(), BuildpackBuilder()]


def build(job: BuildJob, builders: list[Builder] | None = None) -> BuildResult:
    if not any(job.source.iterdir()):
        raise BuildError("the pushed tree is empty")
    for builder in builders or default_builders():
        if builder.detect(job.source):
            return builder.build(job)
    raise BuildError("no builder detected this app")
