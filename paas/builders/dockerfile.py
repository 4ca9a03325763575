"""The Dockerfile builder: a `Dockerfile` at the root of the source is built by the engine."""

from __future__ import annotations

from pathlib import Path

from paas.builders.base import BuildJob, BuildResult, Log, read_procfile
from paas.engine.dockerfile.builder import build_dockerfile


class DockerfileBuilder:
    name = "dockerfile"

    def detect(self, source: Path) -> bool:
        return (source / "Dockerfile").is_file()

    def build(self, job: BuildJob) -> BuildResult:
        job.log("-----> Building with Dockerfile")
        engine = job.engine
        image = build_dockerfile(engine.images, engine.runtime, job.source, _indent(job.log))
        processes = read_procfile(job.source) or {"web": ""}
        return BuildResult(image=image, processes=processes)


def _indent(log: Log) -> Log:
    return lambda line: log(f"       {line}")
