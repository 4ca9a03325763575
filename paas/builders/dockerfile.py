"""The Dockerfile builder: a `Dockerfile` at the root of the source is built by the engine.

A FROM image the engine lacks is pulled from the configured registry (PAAS_REGISTRY), if any;
otherwise the build fails with the engine's "image not found".
"""

from __future__ import annotations

from pathlib import Path

from paas.builders.base import BuildJob, BuildResult, Log, read_procfile
from paas.config import Settings
from paas.engine.dockerfile.builder import Pull, build_dockerfile
from paas.engine.images import Image, ImageStore
from paas.errors import BuildError


class DockerfileBuilder:
    name = "dockerfile"
    absent = "no Dockerfile"

    def detect(self, source: Path) -> bool:
        return (source / "Dockerfile").is_file()

    def build(self, job: BuildJob) -> BuildResult:
        if not self.detect(job.source):  # chosen by builder:set
            raise BuildError("the dockerfile builder is selected, but the app has no Dockerfile")
        job.log("-----> Building with Dockerfile")
        engine = job.engine
        log = _indent(job.log)
        image = build_dockerfile(
            engine.images, engine.runtime, job.source, log,
            pull=registry_puller(engine.images, job.settings, log),
        )
        processes = read_procfile(job.source) or {"web": ""}
        return BuildResult(image=image, processes=processes)


def registry_puller(images: ImageStore, settings: Settings, log: Log) -> Pull | None:
    """Pull from the platform's registry, when one is configured."""
    if not settings.registry:
        return None

    def pull(ref: str) -> Image:
        # Imported on use: the registry client's HTTP stack costs start-up time of every build.
        from paas.engine.registry import RegistryClient, parse_reference

        remote = parse_reference(ref, settings.registry)
        with RegistryClient(insecure=settings.registry_insecure,
                            default_registry=settings.registry) as client:
            return client.pull(images, remote, log)

    return pull


def _indent(log: Log) -> Log:
    return lambda line: log(f"       {line}")
