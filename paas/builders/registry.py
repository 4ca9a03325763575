"""The builder family, in order of detection: the first whose `detect` passes builds the app.

`builder:set APP selected NAME` (BuildJob.selected) names one and skips detection. Adding a
builder is adding it to BUILDERS; nothing else names builders.
"""

from __future__ import annotations

from collections.abc import Callable

from paas.builders.base import Builder, BuildJob, BuildResult, NotDetectedError
from paas.builders.buildpack import BuildpackBuilder
from paas.builders.dockerfile import DockerfileBuilder
from paas.errors import BuildError

# name -> factory, in the order of detection.
BUILDERS: dict[str, Callable[[], Builder]] = {
    DockerfileBuilder.name: DockerfileBuilder,
    BuildpackBuilder.name: BuildpackBuilder,
}


def default_builders() -> list[Builder]:
    return [make() for make in BUILDERS.values()]


def select(job: BuildJob, builders: list[Builder]) -> tuple[Builder, list[Builder]]:
    """The builder for the job, and the ones detection passed over before it."""
    if job.selected:
        for builder in builders:
            if builder.name == job.selected:
                return builder, []
        names = ", ".join(b.name for b in builders)
        raise BuildError(f"unknown builder {job.selected!r} (builder:set): use one of {names}")
    for index, builder in enumerate(builders):
        if builder.detect(job.source):
            return builder, builders[:index]
    raise BuildError(", and ".join(b.absent for b in builders))


def build(job: BuildJob, builders: list[Builder] | None = None) -> BuildResult:
    if not any(job.source.iterdir()):
        raise BuildError("the pushed tree is empty")
    builder, passed = select(job, builders or default_builders())
    try:
        return builder.build(job)
    except NotDetectedError as exc:
        raise NotDetectedError(", and ".join([*(b.absent for b in passed), str(exc)])) from None
