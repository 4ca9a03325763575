"""Dockerfile builds on the real engine: busybox base, RUN in a build container, COPY layers."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from paas.engine.baseimages import build_busybox
from paas.engine.dockerfile.builder import build_dockerfile
from paas.engine.engine import Engine
from paas.errors import BuildError, PaasError


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24"
    engine = Engine.open(tmp_path / "engine", f"pdt{random.randint(0, 10**8):08d}", subnet)
    build_busybox(engine.images, lambda line: None)
    try:
        yield engine
    finally:
        engine.runtime.cleanup_all()


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str]) -> Path:
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in files.items():
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(text)
    return context


def _run(engine: Engine, image_id: str, argv: tuple[str, ...]) -> str:
    from paas.engine.containers import ContainerSpec

    image = engine.images.get(image_id)
    lines: list[str] = []
    spec = ContainerSpec(
        name="check", lowerdirs=tuple(str(p) for p in engine.images.lowerdirs(image)), argv=argv,
        env=image.config.env, workdir=image.config.working_dir or "/", network="none",
    )
    result = engine.runtime.run(spec, on_output=lines.append)
    engine.runtime.remove(result.container_id)
    assert result.exit_code == 0, lines
    return "\n".join(lines)


def test_build_runs_steps_into_layers(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ENV GREETING=hello TARGET=/srv/app\n"
        "WORKDIR $TARGET\n"
        "COPY src/ ./\n"
        "RUN echo \"$GREETING from run\" > made.txt && rm -f /etc/group\n"
        'CMD ["cat", "made.txt"]\n'
    )
    context = _context(tmp_path, dockerfile, {"src/a.txt": "A", "src/sub/b.txt": "B"})
    log: list[str] = []
    image = build_dockerfile(engine.images, engine.runtime, context, log.append)

    base = engine.images.get("busybox")
    assert len(image.diff_ids) == len(base.diff_ids) + 3  # WORKDIR, COPY, RUN
    assert image.config.working_dir == "/srv/app"
    assert image.config.cmd == ("cat", "made.txt")
    assert "GREETING=hello" in image.config.env
    assert any(line.startswith("Step 5/6 : RUN") for line in log)
    out = _run(engine, image.id, ("sh", "-c", "cat made.txt a.txt sub/b.txt; ls /etc/group || true"))
    assert "hello from run" in out and "AB" in out.replace("\n", "")
    assert "No such file" in out  # the RUN step's deletion is a whiteout in its layer
    assert engine.runtime.list() == []  # build containers are removed


def test_failed_run_is_a_build_error_naming_the_step(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path, "FROM busybox\nRUN echo oops && exit 3\n", {})
    with pytest.raises(BuildError, match=r"Dockerfile line 2: RUN.*non-zero code: 3"):
        build_dockerfile(engine.images, engine.runtime, context, lambda line: None)
    assert engine.runtime.list() == []


@pytest.mark.parametrize(
    ("dockerfile", "error"),
    [
        ("FROM busybox\nCOPY ../secret /x\n", "outside the build context"),
        ("FROM busybox\nCOPY missing.txt /x\n", "not found in the build context"),
        ("FROM nosuchimage\n", "nosuchimage"),
        ("FROM busybox\nBOGUS x\n", "unknown instruction"),
    ],
)
def test_bad_dockerfiles(engine: Engine, tmp_path: Path, dockerfile: str, error: str) -> None:
    (tmp_path / "secret").write_text("s")
    context = _context(tmp_path, dockerfile, {})
    with pytest.raises(PaasError, match=error):
        build_dockerfile(engine.images, engine.runtime, context, lambda line: None)
