"""Helpers for the Dockerfile build tests: an engine with busybox, contexts, checks of results."""

from __future__ import annotations

import random
from pathlib import Path

from paas.engine.containers import ContainerSpec
from paas.engine.dockerfile.builder import build_dockerfile
from paas.engine.dockerfile.imagefs import ImageFS
from paas.engine.engine import Engine
from paas.engine.images import Image


def make_context(root: Path, dockerfile: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A fresh context dir below root holding the Dockerfile and the files."""
    root.mkdir(parents=True, exist_ok=True)
    context = Path(root) / f"context-{random.randint(0, 10**9)}"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        path = context / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return context


def build(engine: Engine, context: Path, log: list[str] | None = None, **options: object) -> Image:
    lines = log if log is not None else []
    return build_dockerfile(engine.images, engine.runtime, context, lines.append, **options)  # type: ignore[arg-type]


def image_fs(engine: Engine, image: Image) -> ImageFS:
    return ImageFS(engine.images.lowerdirs(image))


def read(engine: Engine, image: Image, path: str) -> str | None:
    return image_fs(engine, image).read_text(path)


def run_in(engine: Engine, image: Image, argv: tuple[str, ...]) -> str:
    """Run argv in a container of the image (as its USER, in its WORKDIR); its output."""
    lines: list[str] = []
    spec = ContainerSpec(
        name="check", lowerdirs=tuple(str(p) for p in engine.images.lowerdirs(image)), argv=argv,
        env=image.config.env, workdir=image.config.working_dir or "/",
        user=image.config.user or "root", network="none",
    )
    result = engine.runtime.run(spec, on_output=lines.append)
    engine.runtime.remove(result.container_id)
    assert result.exit_code == 0, lines
    return "\n".join(lines)


def assert_clean(engine: Engine) -> None:
    """No build container and no build scratch dir left behind."""
    assert engine.runtime.list() == []
    assert [p for p in engine.images.scratch.iterdir() if p.name.startswith("build-")] == []
