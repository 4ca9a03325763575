"""The build cache: what hits, what misses, and that a hit does no image work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dockerfile_kit import assert_clean, build, make_context, read
from testkit import scratch_engine

from paas.engine.engine import Engine

DOCKERFILE = (
    "FROM busybox\n"
    "COPY app.txt /app/\n"
    "RUN cat /app/app.txt > /app/copy.txt\n"
    "COPY lib/ /lib-files/\n"
    'CMD ["cat", "/app/copy.txt"]\n'
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with scratch_engine(tmp_path_factory.mktemp("engine")) as engine:
        yield engine


def _marks(log: list[str]) -> list[str]:
    """Per step after FROM: "hit" or "miss"."""
    arrows = [line for line in log if line.startswith(" ---> ")][1:]
    return ["hit" if "CACHED" in line else "miss" for line in arrows]


def _context(tmp_path: Path) -> Path:
    return make_context(tmp_path, DOCKERFILE, {"app.txt": "v1", "lib/a.txt": "a", "unused.txt": "u"})


def test_unchanged_rebuild_hits_every_step(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    log: list[str] = []
    first = build(engine, context, log)
    assert _marks(log) == ["miss"] * 4
    images_before = len(engine.images.list())
    log.clear()
    second = build(engine, context, log)
    assert second.id == first.id
    assert _marks(log) == ["hit"] * 4
    assert "Step 2/5 : COPY app.txt /app/" in log and f" ---> CACHED {second.short_id}" in log
    assert not any(line == "v1" for line in log)  # a cached RUN does not run
    assert len(engine.images.list()) == images_before  # no commit on a hit
    assert_clean(engine)


def test_changed_file_rebuilds_from_its_step(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    build(engine, context)
    (context / "lib" / "a.txt").write_text("changed")
    log: list[str] = []
    image = build(engine, context, log)
    assert _marks(log) == ["hit", "hit", "miss", "miss"]
    assert read(engine, image, "/lib-files/a.txt") == "changed"

    (context / "app.txt").write_text("v2")
    log.clear()
    image = build(engine, context, log)
    assert _marks(log) == ["miss"] * 4  # the first miss rebuilds the rest
    assert read(engine, image, "/app/copy.txt") == "v2"


def test_mtime_and_unrelated_files_keep_the_cache(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    first = build(engine, context)
    os.utime(context / "app.txt", (1, 1))
    os.utime(context / "lib", (2, 2))
    (context / "unused.txt").write_text("not copied by any step")
    log: list[str] = []
    assert build(engine, context, log).id == first.id
    assert _marks(log) == ["hit"] * 4


def test_mode_change_misses(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    build(engine, context)
    (context / "app.txt").chmod(0o600)
    log: list[str] = []
    build(engine, context, log)
    assert _marks(log)[0] == "miss"


def test_changed_build_arg_misses_from_its_first_use(engine: Engine, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "RUN echo first > /first\n"
        "ARG V=1\n"
        "LABEL fixed=yes\n"
        "RUN echo v=$V > /v\n"
        "LABEL after=yes\n"
    )
    context = make_context(tmp_path, dockerfile)
    build(engine, context)
    log: list[str] = []
    image = build(engine, context, log, build_args={"V": "2"})
    # RUN first, ARG (no image), LABEL fixed hit; the RUN that sees $V misses, and the rest.
    assert _marks(log) == ["hit", "hit", "miss", "miss"]
    assert read(engine, image, "/v") == "v=2\n"
    log.clear()
    build(engine, context, log, build_args={"V": "2"})
    assert _marks(log) == ["hit"] * 4


def test_changed_instruction_misses_from_there(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    build(engine, context)
    (context / "Dockerfile").write_text(DOCKERFILE.replace('CMD ["cat", "/app/copy.txt"]', "CMD date"))
    log: list[str] = []
    image = build(engine, context, log)
    assert _marks(log) == ["hit", "hit", "hit", "miss"]
    assert image.config.cmd == ("/bin/sh", "-c", "date")


def test_no_cache_rebuilds_everything(engine: Engine, tmp_path: Path) -> None:
    context = _context(tmp_path)
    first = build(engine, context)
    log: list[str] = []
    second = build(engine, context, log, no_cache=True)
    assert _marks(log) == ["miss"] * 4
    assert second.id != first.id
    log.clear()
    assert build(engine, context, log).id == second.id  # the uncached build refreshed the cache
    assert _marks(log) == ["hit"] * 4
    assert_clean(engine)
