"""commit: a real container's writable layer becomes an image that runs with the changes."""

from __future__ import annotations

import uuid

import pytest

from paas.engine.commit import commit_container, find_container
from paas.engine.containers import ContainerSpec
from paas.engine.engine import Engine
from paas.engine.images import Image
from paas.errors import ContainerError, DockerfileError


@pytest.fixture
def engine(busybox_engine: Engine) -> Engine:
    return busybox_engine


def spec(engine: Engine, image: Image, argv: tuple[str, ...], *, name: str = "") -> ContainerSpec:
    return ContainerSpec(
        name=name or f"c-{uuid.uuid4().hex[:8]}", image=image.id, argv=argv, network="none",
        lowerdirs=tuple(str(p) for p in engine.images.lowerdirs(image)), env=image.config.env,
    )


def run(engine: Engine, image: Image, argv: tuple[str, ...]) -> tuple[str, str]:
    """Run to the end; return (container id, output). The container stays, stopped."""
    lines: list[str] = []
    result = engine.runtime.run(spec(engine, image, argv), on_output=lines.append)
    assert result.exit_code == 0, lines
    return result.container_id, "\n".join(lines)


def test_commit_makes_an_image_of_the_changes(engine: Engine) -> None:
    base = engine.images.get("busybox")
    script = "mkdir -p /srv && echo committed > /srv/new.txt && rm /etc/group"
    container_id, _ = run(engine, base, ("sh", "-c", script))
    image = commit_container(
        engine.images, engine.runtime, container_id, ref="snap:1", message="by hand",
        changes=['CMD ["cat", "/srv/new.txt"]', "ENV MODE=committed", "WORKDIR /srv", "EXPOSE 8080"],
    )
    assert engine.images.get("snap:1") == image
    assert image.diff_ids[:-1] == base.diff_ids and len(image.diff_ids) == 2
    assert image.config.cmd == ("cat", "/srv/new.txt")
    assert "MODE=committed" in image.config.env and image.config.working_dir == "/srv"
    assert image.config.exposed_ports == ("8080/tcp",)
    assert image.history[-1].comment == "by hand"
    assert image.history[-1].created_by == f"sh -c {script}"
    _, out = run(engine, image, ("sh", "-c", "cat /srv/new.txt; ls /etc/group || echo no-group"))
    assert "committed" in out and "no-group" in out  # the deletion is a whiteout in the layer


def test_commit_by_name_and_without_changes(engine: Engine) -> None:
    base = engine.images.get("busybox")
    created = engine.runtime.create(spec(engine, base, ("true",), name="plain"))
    assert find_container(engine.runtime, "plain").id == created.id
    assert find_container(engine.runtime, created.id[:8]).id == created.id
    image = commit_container(engine.images, engine.runtime, "plain")
    assert image.config == base.config and len(image.layers) == 2
    assert engine.images.refs(image) == []


def test_commit_errors(engine: Engine) -> None:
    base = engine.images.get("busybox")
    with pytest.raises(ContainerError, match="no such container"):
        commit_container(engine.images, engine.runtime, "nope")
    for _ in range(2):
        engine.runtime.create(spec(engine, base, ("true",), name="twin"))
    with pytest.raises(ContainerError, match="several containers"):
        commit_container(engine.images, engine.runtime, "twin")
    bare = engine.runtime.create(
        ContainerSpec(name="bare", lowerdirs=tuple(map(str, engine.images.lowerdirs(base))),
                      argv=("true",), network="none")
    )
    with pytest.raises(ContainerError, match="records no image"):
        commit_container(engine.images, engine.runtime, bare.id)
    other = engine.runtime.create(spec(engine, base, ("true",)))
    with pytest.raises(DockerfileError):
        commit_container(engine.images, engine.runtime, other.id, changes=["RUN echo no"])
    assert len(engine.images.list()) == 1  # nothing was committed by the failures
